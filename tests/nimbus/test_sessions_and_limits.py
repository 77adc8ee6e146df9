"""The KV session engine, the API throttle and the login rate limit."""

from __future__ import annotations

import pytest
from django.contrib.sessions.backends.base import CreateError
from django.test import Client

from nimbus import conf
from nimbus.sessions import SessionStore
from tests.nimbus.api_support import api_user
from tests.nimbus.conftest import ADMIN_EMAIL, PASSWORD


def test_session_store_round_trip() -> None:
    session = SessionStore()
    session["cart"] = [1, 2]
    session.save()
    key = session.session_key
    assert key and conf.kv_store().exists("NIMBUS_SESSIONS", f"session:{key}")
    again = SessionStore(session_key=key)
    assert again["cart"] == [1, 2]
    assert again.exists(key)
    entry = conf.kv_store().get_entry("NIMBUS_SESSIONS", f"session:{key}")
    assert entry is not None and entry.expires_at is not None  # expires with the session
    again.delete()
    assert not SessionStore(session_key=key).exists(key)
    assert SessionStore(session_key=key).load() == {}


def test_session_create_refuses_a_taken_key() -> None:
    first = SessionStore()
    first.create()
    clash = SessionStore(session_key=first.session_key)
    with pytest.raises(CreateError):
        clash.save(must_create=True)


@pytest.mark.django_db
@pytest.mark.usefixtures("nimbus_admin")
def test_admin_login_uses_kv_sessions() -> None:
    client = Client()
    assert client.login(username=ADMIN_EMAIL, password=PASSWORD)
    assert client.get("/admin/").status_code == 200
    key = client.cookies["sessionid"].value
    assert conf.kv_store().exists("NIMBUS_SESSIONS", f"session:{key}")


@pytest.mark.usefixtures("domain")
def test_api_throttle_answers_429_with_retry_after() -> None:
    from nimbus.models import ApiKey, key_hash

    user = api_user("alice")
    key = ApiKey.objects.auth("alice").get(key_hash(user.secret))
    key.set("rate_limit", 3)
    key.save()
    statuses = [user.client.get("/api/me/").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    refused = user.client.get("/api/me/")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    other = api_user("bob")  # limits are per key
    assert other.client.get("/api/me/").status_code == 200


@pytest.mark.django_db
def test_login_attempts_are_rate_limited(settings, make_user) -> None:
    settings.NIMBUS_RATE_LIMITS = {"login": 3}
    make_user("victim@example.com", is_admin=True)
    client = Client()
    wrong = {"username": "victim@example.com", "password": "wrong"}
    codes = [client.post("/admin/login/", wrong).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    right = {"username": "victim@example.com", "password": PASSWORD}
    refused = client.post("/admin/login/", right)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    other = client.post("/admin/login/", {"username": "someone@example.com", "password": "x"})
    assert other.status_code == 200  # per user name and address


@pytest.mark.django_db
def test_ipv6_sign_ins_are_limited_under_the_spec_key(settings) -> None:
    settings.NIMBUS_RATE_LIMITS = {"login": 2}
    client = Client(REMOTE_ADDR="2001:db8::1")
    codes = [
        client.post("/admin/login/", {"username": "Victim", "password": "x"}).status_code
        for _ in range(3)
    ]
    assert codes == [200, 200, 429]
    assert conf.kv_store().get("NIMBUS_CACHE", "rl:login:2001:db8::1_victim") == b"3"
