"""The app's settings plus the benchmark baselines: the ``OrmPage`` model (on the Django
database, ``BENCH_DJANGO_DB``) and a plain DRF ModelViewSet under ``/bench/orm/``."""

from __future__ import annotations

import os

from nimbus.settings import *  # noqa: F403
from nimbus.settings import DATABASES, INSTALLED_APPS, VAR_DIR

INSTALLED_APPS = [*INSTALLED_APPS, "rest_framework.authtoken", "bench.djangoapp.apps.BenchConfig"]
# The ORM baseline authenticates as a plain Django app does: auth.User with DRF tokens. The
# Nimbus API is measured with API keys, which do not involve Django's user model.
AUTH_USER_MODEL = "auth.User"
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
ROOT_URLCONF = "bench.urls"
DATABASES = {
    **DATABASES,
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("BENCH_DJANGO_DB", str(VAR_DIR / "bench-django.sqlite3")),
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    },
}
