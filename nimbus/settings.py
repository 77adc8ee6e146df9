"""Django settings for Nimbus.

Local development runs on embedded SQLite files under ``var/`` with no server. Deployments
override through the environment (12-factor): ``DJANGO_SECRET_KEY``, ``DJANGO_DEBUG``,
``DJANGO_ALLOWED_HOSTS``, ``NIMBUS_KV_URL``, ``NIMBUS_D1_URL``, ``NIMBUS_ADAPTER``.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("NIMBUS_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = os.environ.get("DJANGO_DEBUG", "true").lower() in ("1", "true", "yes")
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off")
    SECRET_KEY = "insecure-local-development-key-do-not-use-in-production"

ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")
    if host.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "nimbus.apps.NimbusConfig",
    "nimbus.browse.apps.BrowseConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "nimbus.sessions.SessionClientMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "nimbus.throttling.LoginRateLimitMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "nimbus.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "nimbus.wsgi.application"

# Django's own database: users, sessions and admin state. Nimbus data lives in NIMBUS below.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": VAR_DIR / "django.sqlite3",
    }
}

# The datastore, in the shape of CACHES/STORAGES. Environment URLs override it:
#   NIMBUS_KV_URL=redis://127.0.0.1:6379/0 | sqlite:///var/kv.sqlite3 | memory://
#   NIMBUS_D1_URL=sqlite:///var/metadata.sqlite3 | memory://
#   NIMBUS_ADAPTER=kv | sql   (objects and lists in KV keys, or in the D1 objects/lists tables)
NIMBUS = {
    "KV": {
        "BACKEND": "datastore.backends.sqlite.SQLiteKVStore",
        "OPTIONS": {"path": str(VAR_DIR / "kv.sqlite3")},
    },
    "D1": {
        "BACKEND": "datastore.backends.sqlite.SQLiteDatabase",
        "OPTIONS": {"path": str(VAR_DIR / "metadata.sqlite3")},
    },
    "ADAPTER": "kv",
}

# Django's cache and sessions on the same KV store (namespaces NIMBUS_CACHE, NIMBUS_SESSIONS).
CACHES = {"default": {"BACKEND": "nimbus.cache.KVCache", "LOCATION": "NIMBUS_CACHE"}}
SESSION_ENGINE = "nimbus.sessions"

# Requests per minute: anonymous, staff sessions, API keys without their own rate_limit;
# and sign-in attempts per address and user name per five minutes.
NIMBUS_RATE_LIMITS = {"anon": 60, "session": 600, "key": 1000, "login": 10}

# API-key usage counters (last_used, usage) are written in batches after responses, at most
# once per key in this many seconds per process (0: after every request); see nimbus.key_usage.
NIMBUS_KEY_USAGE_FLUSH_SECONDS = 10

# The most live API keys one user may have (revoked keys do not count); see nimbus.keys.
NIMBUS_MAX_KEYS_PER_USER = 20

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "nimbus.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["nimbus.api.permissions.IsNimbusUser"],
    "DEFAULT_SCHEMA_CLASS": "nimbus.api.schema.NimbusAutoSchema",
    "EXCEPTION_HANDLER": "nimbus.api.support.handle_exception",
    "DEFAULT_THROTTLE_CLASSES": ["nimbus.throttling.ApiKeyRateThrottle"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Nimbus DataModel API",
    "DESCRIPTION": "Projects, pages, batches and their processing queue. Authenticate with "
    "`Authorization: Bearer sk_live_...`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "PageStatusEnum": "nimbus.models.page.PAGE_STATUSES",
        "BatchStatusEnum": "nimbus.models.batch.BATCH_STATUSES",
    },
}

# Request bodies over this are refused with 413 before they are parsed.
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "datastore": {"level": os.environ.get("NIMBUS_LOG_LEVEL", "WARNING")},
        "datamodel": {"level": os.environ.get("NIMBUS_LOG_LEVEL", "WARNING")},
        "nimbus": {"level": os.environ.get("NIMBUS_LOG_LEVEL", "INFO")},
    },
}
