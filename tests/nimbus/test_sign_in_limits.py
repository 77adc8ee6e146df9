"""The sign-in rate limit: one counter per address and normalized user name, one per address,
and no sign-in while the store that keeps the counters is down."""

from __future__ import annotations

import pytest
from django.test import Client

from nimbus import conf
from tests.nimbus.api_support import api_user
from tests.support import FaultyStore

LOGIN = "/admin/login/?next=/admin/"
NAME = "staff@example.com"
FULL_WIDTH = "\uff53\uff54\uff41\uff46\uff46@example.com"  # "staff" in full-width letters


@pytest.fixture(autouse=True)
def fast_passwords(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff(make_user) -> None:
    make_user("staff@example.com", "right-password", is_admin=True)


def attempt(client: Client, username: str, password: str = "wrong") -> int:
    return client.post(LOGIN, {"username": username, "password": password}).status_code


@pytest.mark.usefixtures("staff")
def test_sign_in_can_succeed_within_the_limit(settings) -> None:
    settings.NIMBUS_RATE_LIMITS = {"login": 3}
    client = Client()
    assert attempt(client, NAME) == 200
    assert attempt(client, NAME, "right-password") == 302


@pytest.mark.usefixtures("staff")
@pytest.mark.parametrize(
    "variant",
    [
        NAME,
        f"{NAME} ",
        f" {NAME}",
        f"\u00a0{NAME}",
        f"{NAME}\t",
        FULL_WIDTH,
        NAME.upper(),
        "Staff@Example.com\u3000",
    ],
)
def test_the_login_limit_counts_the_user_name_as_sign_in_compares_it(
    settings, variant: str
) -> None:
    settings.NIMBUS_RATE_LIMITS = {"login": 3, "login_address": 100}
    client = Client()
    assert [attempt(client, NAME) for _ in range(4)] == [200, 200, 200, 429]
    # Django strips and NFKC-normalizes the name before checking the password: every spelling
    # that would sign in as "staff" shares its counter.
    assert attempt(client, variant, "right-password") == 429
    assert "sessionid" not in client.cookies


@pytest.mark.usefixtures("staff")
def test_the_variants_count_towards_one_limit(settings) -> None:
    settings.NIMBUS_RATE_LIMITS = {"login": 3, "login_address": 100}
    client = Client()
    codes = [attempt(client, name) for name in (f"{NAME} ", f"\u00a0{NAME}", FULL_WIDTH, NAME)]
    assert codes == [200, 200, 200, 429]
    key = f"rl:login:127.0.0.1_{NAME}"
    assert conf.kv_store().get("NIMBUS_CACHE", key) == b"4"


@pytest.mark.django_db
def test_names_outside_the_key_alphabet_get_distinct_counters(settings) -> None:
    settings.NIMBUS_RATE_LIMITS = {"login": 2, "login_address": 100}
    client = Client()
    assert [attempt(client, "jürgen") for _ in range(3)] == [200, 200, 429]
    # Not folded into one "j-rgen" counter: one name cannot lock out another.
    assert attempt(client, "jörgen") == 200
    assert attempt(client, "j-rgen") == 200
    assert attempt(client, "JÜRGEN") == 429
    long_name = "x" * 200  # longer than a key's part: hashed
    assert [attempt(client, long_name) for _ in range(3)] == [200, 200, 429]
    assert attempt(client, long_name + "y") == 200


@pytest.mark.usefixtures("staff")
def test_one_address_cannot_spray_user_names(settings) -> None:
    settings.NIMBUS_RATE_LIMITS = {"login": 10, "login_address": 5}
    client = Client()
    codes = [attempt(client, f"user{n}") for n in range(6)]
    assert codes == [200, 200, 200, 200, 200, 429]
    refused = client.post(LOGIN, {"username": NAME, "password": "right-password"})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert conf.kv_store().get("NIMBUS_CACHE", "rl:login:127.0.0.1") == b"7"
    # Another address has its own count.
    assert attempt(Client(REMOTE_ADDR="198.51.100.9"), NAME, "right-password") == 302


@pytest.mark.django_db
def test_the_address_limit_defaults_to_a_multiple_of_the_user_limit(settings) -> None:
    settings.NIMBUS_RATE_LIMITS = {"login": 2}
    client = Client()
    codes = [attempt(client, f"user{n}") for n in range(11)]
    assert codes == [200] * 10 + [429]


@pytest.mark.usefixtures("staff")
def test_a_refusal_is_json_for_scripts_and_html_for_browsers(settings) -> None:
    settings.NIMBUS_RATE_LIMITS = {"login": 1}
    client = Client()
    attempt(client, NAME)
    refused = client.post(LOGIN, {"username": NAME, "password": "x"})
    assert refused.status_code == 429
    assert refused.json() == {"detail": "Too many sign-in attempts; try again later."}
    page = client.post(
        LOGIN,
        {"username": NAME, "password": "x"},
        HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8",
    )
    assert page.status_code == 429 and page.headers["Content-Type"].startswith("text/html")
    assert b"Too many sign-in attempts" in page.content


@pytest.fixture
def store_down(monkeypatch: pytest.MonkeyPatch) -> FaultyStore:
    """The KV store refuses every counter increment with ``Unavailable``."""
    faulty = FaultyStore(conf.kv_store())
    faulty.failing = {"incr"}
    monkeypatch.setattr(conf, "kv_store", lambda: faulty)
    return faulty


@pytest.mark.usefixtures("staff", "store_down")
@pytest.mark.parametrize("path", ["/admin/login/", "/api-auth/login/"])
def test_sign_in_is_refused_while_the_store_is_down(path: str, caplog) -> None:
    client = Client()
    response = client.post(path, {"username": NAME, "password": "right-password"})
    assert response.status_code == 503
    assert 1 <= int(response.headers["Retry-After"]) <= 300
    assert "temporarily unavailable" in response.json()["detail"]
    assert "sessionid" not in client.cookies
    assert "refusing sign-in" in caplog.text
    page = client.post(
        path, {"username": NAME, "password": "right-password"}, HTTP_ACCEPT="text/html"
    )
    assert page.status_code == 503 and b"temporarily unavailable" in page.content
    assert client.get(path).status_code == 200  # only the attempts are refused


@pytest.mark.usefixtures("domain", "store_down")
def test_the_api_throttle_lets_requests_through_while_the_store_is_down(settings, caplog) -> None:
    alice = api_user("alice")
    assert alice.client.get("/api/me/").status_code == 200
    assert "letting key_" in caplog.text
    settings.NIMBUS_API_THROTTLE_FAIL_OPEN = False
    refused = alice.client.get("/api/me/")
    assert refused.status_code == 503 and "temporarily unavailable" in refused.json()["detail"]
