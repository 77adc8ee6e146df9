"""Django settings for Nimbus.

Local development runs on embedded SQLite files under ``var/`` with no server, with
``DJANGO_DEBUG=true``. Without it the settings are production settings: a secret key is required
and HTTPS is enforced (see README, "Run in production"). Deployments override through the
environment (12-factor): ``DJANGO_SECRET_KEY``, ``DJANGO_DEBUG``, ``DJANGO_ALLOWED_HOSTS``, the
``DJANGO_SECURE_*`` switches below, ``NIMBUS_KV_URL``, ``NIMBUS_D1_URL``, ``NIMBUS_ADAPTER``.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured


def env_flag(name: str, default: bool) -> bool:
    """A yes/no environment variable: ``true``/``1``/``yes`` or ``false``/``0``/``no``."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name}={raw!r}: expected true or false")


def env_list(name: str, default: str = "") -> list[str]:
    """A comma-separated environment variable."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


BASE_DIR = Path(__file__).resolve().parent.parent
# The embedded default's data (SQLite files) lives here, readable by its owner only.
VAR_DIR = Path(os.environ.get("NIMBUS_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)

DEBUG = env_flag("DJANGO_DEBUG", False)

# Keys marked "django-insecure-" are refused whenever DEBUG is off (here, and by the system
# check nimbus.E007 for settings that change DEBUG later).
DEVELOPMENT_SECRET_KEY = "django-insecure-nimbus-local-development-key"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "") or (DEVELOPMENT_SECRET_KEY if DEBUG else "")
if not DEBUG and (not SECRET_KEY or SECRET_KEY.startswith("django-insecure-")):
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY must be set to a secret value (not a django-insecure- development "
        "key) when DJANGO_DEBUG is off; for local development set DJANGO_DEBUG=true"
    )

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

# HTTPS. On by default when DEBUG is off; behind a proxy that terminates TLS, set
# DJANGO_SECURE_PROXY_SSL_HEADER=true (the proxy sets X-Forwarded-Proto) or turn the redirect off.
SECURE_SSL_REDIRECT = env_flag("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
if env_flag("DJANGO_SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
try:
    SECURE_HSTS_SECONDS = int(
        os.environ.get("DJANGO_SECURE_HSTS_SECONDS") or (0 if DEBUG else 31_536_000)
    )
except ValueError as exc:
    raise ImproperlyConfigured(f"DJANGO_SECURE_HSTS_SECONDS: {exc}") from exc
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_flag("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_flag("DJANGO_SECURE_HSTS_PRELOAD", not DEBUG)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_HTTPONLY = CSRF_COOKIE_HTTPONLY = True  # no script here reads either cookie
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"

# Error reports (the debug page, mailed reports) mask passwords in URLs and the app's secrets.
DEFAULT_EXCEPTION_REPORTER_FILTER = "nimbus.reporting.NimbusExceptionReporterFilter"

INSTALLED_APPS = [
    "nimbus.accounts.apps.AccountsConfig",  # the auth user model; listed before django.contrib
    "nimbus.accounts.apps.AdminConfig",  # django.contrib.admin on the Nimbus admin site
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
    "whitenoise.middleware.WhiteNoiseMiddleware",  # static files, with DEBUG off too
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

# One account system: Nimbus users (the USER DataModel) sign in with email and password, to
# /admin/ (admins) and the browsable API (/api-auth/login/); see nimbus.accounts.
AUTH_USER_MODEL = "nimbus_accounts.Account"
AUTHENTICATION_BACKENDS = ["nimbus.accounts.backends.NimbusBackend"]
LOGIN_URL = "/api-auth/login/"
LOGIN_REDIRECT_URL = "/api/"

# Django's own database: content types and permissions. Users are Nimbus users and sessions
# live in KV; Nimbus data lives in NIMBUS below.
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

# Requests per minute: anonymous, signed-in sessions, API keys without their own rate_limit;
# and sign-in attempts per five minutes per address and user name ("login") and per address
# whatever the name ("login_address", by default 5 x "login").
NIMBUS_RATE_LIMITS = {"anon": 60, "session": 600, "key": 1000, "login": 10}

# While the KV store is down sign-in is refused (503); the API throttle lets requests through
# unless this is False (then they get 503 too).
NIMBUS_API_THROTTLE_FAIL_OPEN = True

# Reverse proxies (IP addresses or networks) whose X-Forwarded-For is believed: behind them the
# client is the right-most address in it that is not one of them. Default: none, the header is
# ignored. NIMBUS_TRUSTED_PROXIES=10.0.0.0/8,192.0.2.1 in the environment.
NIMBUS_TRUSTED_PROXIES = [
    proxy.strip()
    for proxy in os.environ.get("NIMBUS_TRUSTED_PROXIES", "").split(",")
    if proxy.strip()
]

# API-key usage counters (last_used, usage) are written in batches after responses, at most
# once per key in this many seconds per process (0: after every request); see nimbus.key_usage.
NIMBUS_KEY_USAGE_FLUSH_SECONDS = 10

# The most live API keys one user may have (revoked keys do not count); see nimbus.keys.
NIMBUS_MAX_KEYS_PER_USER = 20

# Every password set goes through these: User.set_password, the admin seed (ADMIN_PASSWORD),
# createsuperuser, changepassword, nimbus_create_key --password-stdin, the admin's password change.
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
# ``manage.py collectstatic`` copies (and compresses) them here; WhiteNoise serves them.
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

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
