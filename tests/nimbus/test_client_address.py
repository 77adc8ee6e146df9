"""The client's address behind trusted proxies (``NIMBUS_TRUSTED_PROXIES``), as the sign-in
limit, the API throttle and the session record see it."""

from __future__ import annotations

import json

import pytest
from django.core.checks import run_checks
from django.test import Client, RequestFactory

from nimbus import conf
from nimbus.addresses import client_address
from tests.nimbus.conftest import ADMIN_EMAIL, PASSWORD

PROXIES = ["10.0.0.0/8", "192.0.2.1", "fd00::/8"]


def address(remote: str | None, forwarded: str | None = None) -> str | None:
    meta = {} if forwarded is None else {"HTTP_X_FORWARDED_FOR": forwarded}
    request = RequestFactory().get("/", **meta)
    if remote is None:
        del request.META["REMOTE_ADDR"]
    else:
        request.META["REMOTE_ADDR"] = remote
    return client_address(request)


def test_without_trusted_proxies_the_peer_is_the_client(settings) -> None:
    settings.NIMBUS_TRUSTED_PROXIES = []
    assert address("203.0.113.7") == "203.0.113.7"
    assert address("203.0.113.7", "198.51.100.1") == "203.0.113.7"  # spoofed: ignored
    assert address("10.0.0.1", "198.51.100.1") == "10.0.0.1"
    assert address("2001:DB8::1") == "2001:db8::1"
    assert address(None) is None and address("") is None


@pytest.mark.parametrize(
    ("remote", "forwarded", "client"),
    [
        ("10.0.0.1", "198.51.100.1", "198.51.100.1"),
        ("192.0.2.1", "198.51.100.1", "198.51.100.1"),
        ("10.0.0.1", "198.51.100.1, 10.0.0.2", "198.51.100.1"),  # two proxies
        ("10.0.0.1", "6.6.6.6, 198.51.100.1", "198.51.100.1"),  # the client's own entry
        ("10.0.0.1", "6.6.6.6,198.51.100.1 , 10.9.9.9", "198.51.100.1"),
        ("10.0.0.1", "2001:db8::7", "2001:db8::7"),
        ("fd00::1", "[2001:DB8::7]:4711", "2001:db8::7"),
        ("10.0.0.1", "198.51.100.1:4711", "198.51.100.1"),
        ("10.0.0.1", "::ffff:198.51.100.1", "198.51.100.1"),
        ("10.0.0.1", None, "10.0.0.1"),  # no header: the proxy itself
        ("10.0.0.1", "", "10.0.0.1"),
        ("10.0.0.1", "10.0.0.3, 10.0.0.2", "10.0.0.3"),  # all proxies: the farthest
        ("10.0.0.1", "6.6.6.6, not-an-ip", "10.0.0.1"),  # garbage: the hop that sent it
        ("10.0.0.1", "6.6.6.6, not-an-ip, 10.0.0.2", "10.0.0.2"),
        ("203.0.113.7", "198.51.100.1", "203.0.113.7"),  # an untrusted peer
    ],
)
def test_behind_trusted_proxies_the_client_is_the_nearest_untrusted_hop(
    settings, remote: str, forwarded: str | None, client: str
) -> None:
    settings.NIMBUS_TRUSTED_PROXIES = PROXIES
    assert address(remote, forwarded) == client


def test_invalid_trusted_proxies_are_reported_by_the_checks(settings) -> None:
    settings.NIMBUS_TRUSTED_PROXIES = ["10.0.0.0/8", "proxy.local"]
    errors = [m for m in run_checks() if m.id == "nimbus.E008"]
    assert len(errors) == 1 and "proxy.local" in errors[0].msg
    settings.NIMBUS_TRUSTED_PROXIES = "10.0.0.1"  # a string, not a list
    assert [m.id for m in run_checks() if m.id == "nimbus.E008"] == ["nimbus.E008"]
    settings.NIMBUS_TRUSTED_PROXIES = PROXIES
    assert not [m for m in run_checks() if m.id == "nimbus.E008"]


@pytest.mark.django_db
def test_behind_a_proxy_each_client_has_its_own_sign_in_limit(settings) -> None:
    settings.NIMBUS_RATE_LIMITS = {"login": 2}
    settings.NIMBUS_TRUSTED_PROXIES = ["10.0.0.0/8"]
    proxy = Client(REMOTE_ADDR="10.0.0.1")

    def attempt(forwarded: str) -> int:
        return proxy.post(
            "/admin/login/",
            {"username": "victim", "password": "x"},
            HTTP_X_FORWARDED_FOR=forwarded,
        ).status_code

    assert [attempt("203.0.113.5") for _ in range(3)] == [200, 200, 429]
    assert attempt("198.51.100.7") == 200  # another client behind the same proxy
    # A client cannot escape its limit by sending its own X-Forwarded-For entries.
    assert attempt("6.6.6.6, 203.0.113.5") == 429
    assert conf.kv_store().get("NIMBUS_CACHE", "rl:login:203.0.113.5_victim") == b"4"


@pytest.mark.django_db
def test_an_untrusted_peer_cannot_spoof_its_address(settings) -> None:
    settings.NIMBUS_RATE_LIMITS = {"login": 2}
    settings.NIMBUS_TRUSTED_PROXIES = ["10.0.0.0/8"]
    client = Client(REMOTE_ADDR="203.0.113.5")
    codes = [
        client.post(
            "/admin/login/",
            {"username": "victim", "password": "x"},
            HTTP_X_FORWARDED_FOR=f"198.51.100.{n}",
        ).status_code
        for n in range(3)
    ]
    assert codes == [200, 200, 429]


def test_the_api_throttle_counts_anonymous_clients_behind_a_proxy(
    settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nimbus import throttling

    settings.NIMBUS_TRUSTED_PROXIES = ["10.0.0.0/8"]
    seen: list[str] = []
    check = throttling.RateLimiterClient.check_limit

    def spy(self, identifier: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(identifier)
        return check(self, identifier, *args, **kwargs)

    monkeypatch.setattr(throttling.RateLimiterClient, "check_limit", spy)
    request = RequestFactory().get("/api/", HTTP_X_FORWARDED_FOR="203.0.113.5")
    request.META["REMOTE_ADDR"] = "10.0.0.1"
    from django.contrib.auth.models import AnonymousUser
    from rest_framework.request import Request

    drf_request = Request(request)
    drf_request.user = AnonymousUser()
    assert throttling.ApiKeyRateThrottle().allow_request(drf_request, None)
    assert seen == ["ip_203.0.113.5"]


@pytest.mark.django_db
def test_a_session_records_the_client_behind_a_proxy(settings, nimbus_admin) -> None:
    settings.NIMBUS_TRUSTED_PROXIES = ["10.0.0.0/8"]
    client = Client(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.5")
    response = client.post("/admin/login/", {"username": ADMIN_EMAIL, "password": PASSWORD})
    assert response.status_code == 302
    key = client.cookies["sessionid"].value
    record = json.loads(conf.kv_store().get("NIMBUS_SESSIONS", f"session:{key}") or b"{}")
    assert record["ip"] == "203.0.113.5"
