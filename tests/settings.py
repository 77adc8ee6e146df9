"""The test suite's settings: the app's settings as the README's development command loads them
(``DJANGO_DEBUG=true``: plain HTTP, no HSTS; the test runner still turns ``DEBUG`` itself off),
with a test secret key and static files found in the apps (no ``collectstatic``).
Production settings are tested in their own processes (``tests/nimbus/test_production.py``)."""

from __future__ import annotations

import os
from unittest import mock

with mock.patch.dict(os.environ, {"DJANGO_DEBUG": "true"}):
    from nimbus.settings import *  # noqa: F403

SECRET_KEY = "nimbus-test-suite-key-" + "0123456789abcdef" * 3
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
