"""Production mode: DEBUG off by default, the secret key, HTTPS, cookies, ``check --deploy``, the
``var/`` directory. Settings are read once per process, so these run ``nimbus.settings`` in a
process of their own with the environment under test."""

from __future__ import annotations

import html
import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import Client, RequestFactory
from django.views.debug import technical_500_response

from nimbus.reporting import mask_credentials

ROOT = Path(__file__).resolve().parents[2]
SECRET = "t9#Qx!v2Lr8@pZ" * 4  # long and varied enough for check --deploy


def run_python(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python *args`` in the repository with ``nimbus.settings``, the caller's Django and
    Nimbus variables removed, in-memory stores and ``var/`` in ``tmp_path``; plus ``env``."""
    environ = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "NIMBUS_", "ADMIN_", "CLOUDFLARE_"))
    }
    environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "nimbus.settings",
            "NIMBUS_VAR_DIR": str(tmp_path / "var"),
            "NIMBUS_KV_URL": "memory://",
            "NIMBUS_D1_URL": "memory://",
            **(env or {}),
        }
    )
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def django_json(tmp_path: Path, code: str, **env: str) -> Any:
    """Set Django up in a fresh process with ``env``, run ``code`` (which assigns ``result``)
    and return ``result`` as JSON."""
    script = "import django, json\ndjango.setup()\n" + textwrap.dedent(code)
    script += "\nprint(json.dumps(result))\n"
    done = run_python(tmp_path, "-c", script, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


PROBE = """
from django.conf import settings
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpResponse
from django.test import Client, RequestFactory

names = ["DEBUG", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS",
         "SECURE_HSTS_PRELOAD", "SECURE_PROXY_SSL_HEADER", "SESSION_COOKIE_SECURE",
         "CSRF_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "CSRF_COOKIE_HTTPONLY",
         "SESSION_COOKIE_SAMESITE", "CSRF_COOKIE_SAMESITE"]

def flags(cookie):
    return {"secure": bool(cookie["secure"]), "httponly": bool(cookie["httponly"]),
            "samesite": cookie["samesite"]}

def view(request):
    request.session["seen"] = True
    return HttpResponse()

client = Client()
plain = client.get("/admin/login/")
https = client.get("/admin/login/", secure=True)
proxied = client.get("/admin/login/", headers={"x-forwarded-proto": "https"})
signed = SessionMiddleware(view)(RequestFactory().get("/", secure=True))
result = {
    "settings": {name: getattr(settings, name) for name in names},
    "plain": [plain.status_code, plain.headers.get("Location")],
    "https": [https.status_code, https.headers.get("Strict-Transport-Security")],
    "proxied": [proxied.status_code, proxied.headers.get("Strict-Transport-Security")],
    "csrf": flags(https.cookies[settings.CSRF_COOKIE_NAME]),
    "session": flags(signed.cookies[settings.SESSION_COOKIE_NAME]),
}
"""
HOST = {"DJANGO_ALLOWED_HOSTS": "testserver"}


def test_production_is_the_default_https_only_with_secure_cookies(tmp_path: Path) -> None:
    found = django_json(tmp_path, PROBE, DJANGO_SECRET_KEY=SECRET, **HOST)
    assert found["settings"] == {
        "DEBUG": False,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31_536_000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": True,
        "SECURE_PROXY_SSL_HEADER": None,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "CSRF_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "CSRF_COOKIE_SAMESITE": "Lax",
    }
    assert found["plain"] == [301, "https://testserver/admin/login/"]
    assert found["https"] == [200, "max-age=31536000; includeSubDomains; preload"]
    assert found["proxied"][0] == 301  # X-Forwarded-Proto is not trusted unless asked
    flags = {"secure": True, "httponly": True, "samesite": "Lax"}
    assert found["csrf"] == flags and found["session"] == flags


def test_development_needs_django_debug_true(tmp_path: Path) -> None:
    found = django_json(tmp_path, PROBE, DJANGO_DEBUG="true", **HOST)
    assert found["settings"]["DEBUG"] is True
    assert found["plain"] == [200, None] and found["https"] == [200, None]
    assert found["session"] == {"secure": False, "httponly": True, "samesite": "Lax"}
    wrong = run_python(tmp_path, "manage.py", "check", env={"DJANGO_DEBUG": "maybe"})
    assert wrong.returncode != 0 and "DJANGO_DEBUG='maybe'" in wrong.stderr


def test_switches_for_a_proxy_that_terminates_tls(tmp_path: Path) -> None:
    env = {
        "DJANGO_SECRET_KEY": SECRET,
        "DJANGO_SECURE_PROXY_SSL_HEADER": "true",
        "DJANGO_SECURE_HSTS_SECONDS": "3600",
        "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "false",
        "DJANGO_SECURE_HSTS_PRELOAD": "false",
        **HOST,
    }
    found = django_json(tmp_path, PROBE, **env)
    assert found["proxied"] == [200, "max-age=3600"]
    assert found["plain"][0] == 301
    found = django_json(tmp_path, PROBE, **env, DJANGO_SECURE_SSL_REDIRECT="false")
    assert found["plain"] == [200, None]  # no redirect, and no HSTS over plain HTTP


def test_check_deploy_is_clean(tmp_path: Path) -> None:
    done = run_python(
        tmp_path,
        "manage.py",
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={"DJANGO_SECRET_KEY": SECRET},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


@pytest.mark.parametrize(
    "env",
    [{}, {"DJANGO_SECRET_KEY": "django-insecure-nimbus-local-development-key"}],
    ids=["no key", "the development key"],
)
def test_production_refuses_to_start_without_a_real_secret_key(
    tmp_path: Path, env: dict[str, str]
) -> None:
    done = run_python(tmp_path, "manage.py", "check", env=env)
    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr and "DJANGO_SECRET_KEY" in done.stderr


def test_the_development_key_is_a_check_error_when_debug_is_off(settings) -> None:
    from nimbus.settings import DEVELOPMENT_SECRET_KEY

    settings.DEBUG = True
    settings.SECRET_KEY = DEVELOPMENT_SECRET_KEY
    call_command("check")
    settings.DEBUG = False
    with pytest.raises(
        SystemCheckError, match=r"nimbus\.E007\) SECRET_KEY .* set DJANGO_SECRET_KEY"
    ):
        call_command("check")


def test_var_directory_is_created_for_its_owner_only(tmp_path: Path) -> None:
    var = tmp_path / "data" / "var"
    code = "import nimbus.settings"
    done = run_python(
        tmp_path, "-c", code, env={"DJANGO_DEBUG": "true", "NIMBUS_VAR_DIR": str(var)}
    )
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(var.stat().st_mode) == 0o700


def test_sqlite_data_directories_are_created_for_their_owner_only(tmp_path: Path) -> None:
    from datastore.backends.sqlite import SQLiteKVStore

    store = SQLiteKVStore(tmp_path / "fresh" / "kv.sqlite3")
    store.close()
    assert stat.S_IMODE((tmp_path / "fresh").stat().st_mode) == 0o700


@pytest.fixture
def collected_static(settings, tmp_path: Path) -> Path:
    """Production static files: ``collectstatic`` into a fresh STATIC_ROOT, served by WhiteNoise
    from there only (no finders), with DEBUG off."""
    settings.DEBUG = False
    settings.STATIC_ROOT = tmp_path / "static"
    settings.WHITENOISE_USE_FINDERS = False
    settings.WHITENOISE_AUTOREFRESH = False
    call_command("collectstatic", interactive=False, verbosity=0)
    return settings.STATIC_ROOT


def assets(html: str) -> list[str]:
    """The local stylesheets, scripts and images a page loads."""
    found = re.findall(r'(?:src|href)="(/[^"]+)"', html)
    return [url.replace("&amp;", "&") for url in found if not url.startswith("//")]


@pytest.mark.usefixtures("collected_static")
def test_admin_css_is_served_with_debug_off() -> None:
    client = Client()
    page = client.get("/admin/login/")
    assert page.status_code == 200
    stylesheets = [url for url in assets(page.content.decode()) if url.endswith(".css")]
    assert "/static/admin/css/base.css" in stylesheets
    for url in stylesheets:
        response = client.get(url)
        assert response.status_code == 200, url
        assert response["Content-Type"].startswith("text/css")
        assert b"".join(response.streaming_content)  # type: ignore[attr-defined]


@pytest.mark.django_db
@pytest.mark.usefixtures("collected_static")
def test_swagger_ui_assets_are_served_with_debug_off() -> None:
    client = Client()
    page = client.get("/api/docs/")
    assert page.status_code == 200
    static = [url for url in assets(page.content.decode()) if url.startswith("/static/")]
    assert any(url.endswith("swagger-ui-bundle.js") for url in static)
    assert any(url.endswith("swagger-ui.css") for url in static)
    for url in static:
        assert client.get(url).status_code == 200, url


KV_URL = "redis://admin:S3cretPw@redis.internal:6379/0"


def crash(request: Any) -> Any:
    """The technical 500 page Django shows with DEBUG on, for an error raised in a frame that
    holds credentials."""
    nimbus_url = KV_URL  # noqa: F841 - a local the traceback shows
    key = "sk_live_" + "ab" * 16  # noqa: F841
    try:
        raise RuntimeError("the store is down")
    except RuntimeError:
        return technical_500_response(request, *sys.exc_info())


def test_the_debug_page_masks_credentials(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.DEBUG = True
    monkeypatch.setenv("NIMBUS_KV_URL", KV_URL)
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "cf-T0ken-value")
    monkeypatch.setenv("ADMIN_PASSWORD", "Adm1n-Passw0rd")
    monkeypatch.setenv("SERVICE_CREDENTIALS", "cred-Value-9")
    settings.NIMBUS_REPLICAS = {"cache": ["rediss://:P4ss@cache.internal:6380"]}
    settings.BACKUP_TARGET = "https://ABCDEFTOKEN@backups.example.com/nimbus"
    # runserver copies the process environment into every request's META
    request = RequestFactory().get("/api/status/", **dict(os.environ))
    page = crash(request).content.decode()
    text = html.unescape(page)
    secrets = ["S3cretPw", "cf-T0ken-value", "Adm1n-Passw0rd", "cred-Value-9", "P4ss"]
    for secret in [*secrets, "ABCDEFTOKEN", "ab" * 16]:
        assert secret not in text, secret
    stars = "********************"
    assert f"redis://admin:{stars}@redis.internal:6379/0" in text  # in META and in the frame
    assert f"rediss://:{stars}@cache.internal:6380" in text
    assert f"https://{stars}@backups.example.com/nimbus" in text
    assert f"sk_live_{stars}" in text


def test_mask_credentials_keeps_urls_without_them() -> None:
    assert mask_credentials("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert mask_credentials("see https://example.com/a@b") == "see https://example.com/a@b"
    assert mask_credentials("postgres://u:p@ss@db/x, redis://u:q@r") == (
        "postgres://u:********@db/x, redis://u:********@r"
    )
    assert mask_credentials("sqlite:///var/kv.sqlite3") == "sqlite:///var/kv.sqlite3"
