"""Sessions as the data-structures spec's SessionData, readable under ``session:{key}`` in
NIMBUS_SESSIONS, on every KV backend."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.sessions.backends.base import UpdateError
from django.test import Client

from datastore import KVStore, codec
from nimbus import conf
from nimbus.models import User
from nimbus.sessions import USER_AGENT_MAX_LENGTH, SessionStore
from tests.nimbus.conftest import ADMIN_EMAIL, PASSWORD
from tests.support import KV_BACKENDS, make_kv, needs_cloudflare

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"
FIELDS = {"user_id", "email", "created", "expires", "ip", "user_agent", "data"}


@pytest.fixture(params=KV_BACKENDS)
def kv(request, tmp_path, monkeypatch) -> Iterator[KVStore]:
    name = request.param
    cloudflare = request.getfixturevalue("cloudflare_api") if needs_cloudflare(name) else None
    store = make_kv(name, tmp_path, cloudflare).store
    monkeypatch.setattr(conf, "kv_store", lambda: store)
    yield store
    store.close()


def stored(kv: KVStore, key: str) -> dict[str, Any] | None:
    raw = kv.get("NIMBUS_SESSIONS", f"session:{key}")
    return None if raw is None else json.loads(raw)


def moment(text: str) -> dt.datetime:
    assert ISO.fullmatch(text), text
    return dt.datetime.fromisoformat(text)


def iso_in(kv: KVStore, seconds: float) -> str:
    """An ISO timestamp ``seconds`` from now on the store's clock."""
    return codec.isoformat(dt.datetime.fromtimestamp(kv.clock() + seconds, dt.UTC))


def sign_in(client: Client) -> str:
    response = client.post(
        "/admin/login/?next=/admin/", {"username": ADMIN_EMAIL, "password": PASSWORD}
    )
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"
    return client.cookies["sessionid"].value


@pytest.mark.django_db
def test_an_admin_session_is_stored_as_session_data(kv: KVStore, nimbus_admin: User) -> None:
    client = Client(REMOTE_ADDR="203.0.113.7", HTTP_USER_AGENT=BROWSER)
    key = sign_in(client)
    assert client.get("/admin/").status_code == 200  # the payload still signs the user in
    record = stored(kv, key)
    assert record is not None and set(record) == FIELDS
    assert record["user_id"] == nimbus_admin.pk  # the Nimbus user_id, as the API names them
    assert record["email"] == "admin@example.com"
    assert record["ip"] == "203.0.113.7" and record["user_agent"] == BROWSER
    created, expires = moment(record["created"]), moment(record["expires"])
    now = dt.datetime.fromtimestamp(kv.clock(), dt.UTC)
    assert created <= now < expires
    age = (expires - created).total_seconds()
    assert abs(age - django_settings.SESSION_COOKIE_AGE) < 10
    assert SessionStore(session_key=key)["_auth_user_id"] == nimbus_admin.pk


@pytest.mark.django_db
@pytest.mark.usefixtures("nimbus_admin")
def test_signing_out_deletes_the_session(kv: KVStore) -> None:
    client = Client()
    key = sign_in(client)
    assert stored(kv, key) is not None
    assert client.post("/admin/logout/").status_code == 200
    assert stored(kv, key) is None
    assert client.get("/admin/").status_code == 302  # to the login page


@pytest.mark.django_db
def test_a_save_keeps_created_and_moves_expires(kv: KVStore, nimbus_admin: User) -> None:
    key = sign_in(Client(REMOTE_ADDR="198.51.100.1", HTTP_USER_AGENT=BROWSER))
    record = stored(kv, key)
    assert record is not None
    record["created"] = "2026-01-02T03:04:05.678Z"
    record["expires"] = iso_in(kv, 60)
    kv.put("NIMBUS_SESSIONS", f"session:{key}", json.dumps(record), ttl=3600)
    session = SessionStore(session_key=key)
    session["seen"] = True
    session.set_expiry(7200)
    session.save()  # outside a request: the last request's client is kept
    again = stored(kv, key)
    assert again is not None and again["created"] == "2026-01-02T03:04:05.678Z"
    expires = moment(again["expires"]).timestamp()
    assert abs(expires - (kv.clock() + 7200)) < 10
    assert again["ip"] == "198.51.100.1" and again["user_agent"] == BROWSER
    assert again["user_id"] == nimbus_admin.pk
    assert SessionStore(session_key=key)["seen"] is True


def test_a_session_saved_outside_a_request_has_no_client_or_user(kv: KVStore) -> None:
    session = SessionStore()
    session["cart"] = [1, 2]
    session.save()
    record = stored(kv, session.session_key or "")
    assert record is not None and set(record) == FIELDS
    assert record["ip"] is None and record["user_agent"] is None
    assert record["user_id"] is None and record["email"] is None
    assert moment(record["created"]) < moment(record["expires"])


def test_a_session_in_the_old_shape_still_loads(kv: KVStore) -> None:
    key = "oldshape1234567890abcdefghijklmn"
    payload = SessionStore().encode({"cart": [1, 2]})
    kv.put("NIMBUS_SESSIONS", f"session:{key}", json.dumps({"data": payload}), ttl=3600)
    session = SessionStore(session_key=key)
    assert session["cart"] == [1, 2]
    session["cart"] = [3]
    session.save()  # rewritten in the new shape, under the same key
    record = stored(kv, key)
    assert record is not None and set(record) == FIELDS
    assert SessionStore(session_key=key)["cart"] == [3]


@pytest.mark.django_db
@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'{"data": 5}', b'{"user_id": "u"}'])
def test_an_unreadable_session_is_an_empty_one(kv: KVStore, raw: bytes) -> None:
    key = "unreadable1234567890abcdefghijkl"
    kv.put("NIMBUS_SESSIONS", f"session:{key}", raw, ttl=3600)
    assert SessionStore(session_key=key).load() == {}
    client = Client()
    client.cookies["sessionid"] = key
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response.headers["Location"]


@pytest.mark.django_db
@pytest.mark.usefixtures("nimbus_admin")
def test_a_long_user_agent_is_cut(kv: KVStore) -> None:
    key = sign_in(Client(HTTP_USER_AGENT="x" * 5000))
    record = stored(kv, key)
    assert record is not None and record["user_agent"] == "x" * USER_AGENT_MAX_LENGTH
    assert record["ip"] == "127.0.0.1"  # the test client's default REMOTE_ADDR


def test_a_session_signed_out_elsewhere_is_not_written_back(kv: KVStore) -> None:
    mine = SessionStore()
    mine["cart"] = [1]
    mine.save(must_create=True)
    key = mine.session_key or ""
    SessionStore(session_key=key).delete()  # signed out in another request
    mine["cart"] = [1, 2]
    with pytest.raises(UpdateError):
        mine.save()
    assert stored(kv, key) is None
    assert SessionStore(session_key=key).load() == {}


def test_a_session_saved_elsewhere_meanwhile_is_written_over(kv: KVStore) -> None:
    first = SessionStore()
    first["cart"] = [1]
    first.save()
    key = first.session_key or ""
    mine, theirs = SessionStore(session_key=key), SessionStore(session_key=key)
    mine["cart"], theirs["cart"] = [2], [3]  # both loaded the same version
    theirs.save()
    mine.save()  # the last save wins, as with Django's own engines
    assert SessionStore(session_key=key)["cart"] == [2]
    mine["cart"] = [4]
    mine.save()  # and this object now knows the new version
    assert SessionStore(session_key=key)["cart"] == [4]


def test_a_session_saved_with_an_expiry_in_the_past_is_deleted(kv: KVStore) -> None:
    session = SessionStore()
    session["cart"] = [1]
    session.save()
    key = session.session_key or ""
    assert stored(kv, key) is not None
    session.set_expiry(-dt.timedelta(seconds=10))
    session.save()
    assert kv.get("NIMBUS_SESSIONS", f"session:{key}") is None
    assert not SessionStore().exists(key) and SessionStore(session_key=key).load() == {}
    fresh = SessionStore()
    fresh.set_expiry(-dt.timedelta(seconds=10))
    fresh.save()  # created already expired: never stored
    assert fresh.session_key is None or stored(kv, fresh.session_key) is None


MALFORMED_KEYS = ["a" * 300, "abcdefgh!2345678", "abcdefgh/2345678", "abcdefgh 2345678"]


@pytest.mark.parametrize("cookie", MALFORMED_KEYS)
def test_a_malformed_session_key_is_no_session(cookie: str) -> None:
    session = SessionStore(session_key=cookie)
    assert session.session_key is None and session.load() == {}
    assert session.exists(cookie) is False
    session.delete(cookie)  # nothing to delete, and no error
    session["cart"] = [1]
    session.save()
    assert session.session_key not in (None, cookie)


@pytest.mark.django_db
@pytest.mark.usefixtures("domain")
@pytest.mark.parametrize("cookie", MALFORMED_KEYS)
def test_a_malformed_session_cookie_is_an_empty_session_everywhere(
    cookie: str, nimbus_admin: User
) -> None:
    from tests.nimbus.api_support import api_user

    browser = Client(raise_request_exception=False)
    browser.cookies["sessionid"] = cookie
    assert browser.get("/admin/login/").status_code == 200
    assert browser.get("/api/me/").status_code in (401, 403)  # not signed in
    key = sign_in(browser)  # a new session, under a new key
    assert key != cookie and stored(conf.kv_store(), key) is not None
    assert browser.get("/admin/").status_code == 200
    with_key = Client(
        raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {api_user('alice').secret}"
    )
    with_key.cookies["sessionid"] = cookie
    assert with_key.get("/api/me/").status_code == 200
    assert with_key.get("/api/projects/").status_code == 200
