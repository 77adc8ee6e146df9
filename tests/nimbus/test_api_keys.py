"""API keys against their owner and their creator: the owner's current status and admin flag
on every request, keys made only within the creating key's bounds, a cap per user, expiry."""

from __future__ import annotations

import threading
from io import StringIO
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from datamodel import Rejected, Scope, clock
from nimbus import conf
from nimbus.models import ApiKey, User, key_hash
from nimbus.workflows import issue_api_key
from tests.nimbus.api_support import ApiUser, api_user

pytestmark = pytest.mark.usefixtures("domain")

INITIALIZE = "/api/system/initialize/"


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The time keys are checked and made at: set ``now[0]``."""
    moment = ["2024-09-02T13:45:00.000Z"]
    monkeypatch.setattr(clock, "now_iso", lambda: moment[0])
    return moment


def update_owner(user: ApiUser, **values: Any) -> None:
    account = User.objects.system().get(user.user_id, include_deleted=True)
    account.set(values)
    account.save()


def bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def create_key(user: ApiUser | APIClient, **body: Any) -> Any:
    client = user.client if isinstance(user, ApiUser) else user
    return client.post("/api/keys/", {"name": "a key", **body}, format="json")


def create_key_command(*args: str) -> str:
    out = StringIO()
    call_command("nimbus_create_key", *args, stdout=out)
    return out.getvalue().strip()


# -- the owner, read on every request -----------------------------------------------------


def test_a_suspended_owners_key_is_refused_until_the_account_is_active_again() -> None:
    alice = api_user("alice")
    assert alice.client.get("/api/me/").status_code == 200
    update_owner(alice, status="suspended")
    read = alice.client.get("/api/me/")
    write = alice.client.post("/api/projects/", {"name": "x"}, format="json")
    for response in (read, write):
        assert response.status_code == 403
        assert response.json()["detail"] == "The account that owns this API key is suspended."
    update_owner(alice, status="active")
    assert alice.client.get("/api/me/").status_code == 200


def test_a_deleted_owners_key_is_refused() -> None:
    alice = api_user("alice")
    User.objects.system().get("alice").delete()  # soft
    response = alice.client.get("/api/me/")
    assert response.status_code == 401
    assert response.json()["detail"] == "The account that owns this API key no longer exists."
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    User.objects.system().get("alice", include_deleted=True).delete(hard=True)
    assert alice.client.get("/api/me/").status_code == 401


def test_an_owner_who_lost_admin_loses_the_powers_of_their_admin_key() -> None:
    root = api_user("root", admin=True)  # read, write and admin
    assert root.client.post(INITIALIZE, {"dry_run": True}, format="json").status_code == 200
    assert "kv" in root.client.get("/api/status/").json()

    update_owner(root, is_admin=False)
    refused = root.client.post(INITIALIZE, {"dry_run": True}, format="json")
    assert refused.status_code == 403
    assert "kv" not in root.client.get("/api/status/").json()
    me = root.client.get("/api/me/").json()
    assert me["is_admin"] is False and me["key"]["permissions"] == ["read", "write"]
    made = create_key(root, permissions=["admin"])
    assert made.status_code == 400
    assert made.json() == {"permissions": ["Only administrators may create admin keys."]}

    update_owner(root, is_admin=True)
    assert root.client.post(INITIALIZE, {"dry_run": True}, format="json").status_code == 200


def test_the_owner_is_read_not_the_copy_made_with_the_key() -> None:
    alice = api_user("alice")
    update_owner(alice, email="alice@new.example")
    assert alice.client.get("/api/me/").json()["email"] == "alice@new.example"


@pytest.mark.parametrize("permissions", [["read"], ["read", "write"]])
def test_an_admins_key_without_the_admin_permission_has_no_admin_powers(
    permissions: list[str],
) -> None:
    key = api_user("root", admin=True, permissions=permissions)
    response = key.client.post(INITIALIZE)
    assert response.status_code == 403
    assert response.json()["detail"] == (
        "Only administrators may do this: this API key does not have the 'admin' permission."
    )
    assert "kv" not in key.client.get("/api/status/").json()
    assert key.client.get("/api/me/").json()["is_admin"] is True  # the account still is


# -- keys made by keys ----------------------------------------------------------------------


def test_a_key_creates_keys_only_within_its_rate_limit() -> None:
    slow = api_user("alice", rate_limit=5)
    refused = create_key(slow, rate_limit=1000)
    assert refused.status_code == 400
    assert refused.json() == {
        "rate_limit": [
            "At most 5 requests per minute: a key cannot create a key with a higher rate "
            "limit than its own."
        ]
    }
    same = create_key(slow)
    assert same.status_code == 201 and same.json()["rate_limit"] == 5
    assert bearer(same.json()["key"]).get("/api/me/").json()["key"]["rate_limit"] == 5
    slower = create_key(slow, rate_limit=2)
    assert slower.status_code == 201 and slower.json()["rate_limit"] == 2
    assert create_key(api_user("bob"), rate_limit=1000).json()["rate_limit"] == 1000


def test_a_key_creates_keys_only_within_its_permissions() -> None:
    writer = api_user("alice", permissions=["write"])
    refused = create_key(writer, permissions=["read", "write"])
    assert refused.status_code == 400
    assert refused.json() == {
        "permissions": [
            "This API key has the permissions write: a key it creates cannot have read."
        ]
    }
    made = create_key(writer)  # the default, read and write, within what the key has
    assert made.status_code == 201 and made.json()["permissions"] == ["write"]

    reader = api_user("alice", permissions=["read"])
    refused = create_key(reader, permissions=["read"])
    assert refused.status_code == 403  # a read-only key writes nothing, keys included

    admins_plain_key = api_user("root", admin=True, permissions=["read", "write"])
    refused = create_key(admins_plain_key, permissions=["read", "admin"])
    assert refused.status_code == 400
    assert refused.json() == {
        "permissions": [
            "This API key has the permissions read, write: a key it creates cannot have admin."
        ]
    }
    admin_key = api_user("root", admin=True)
    made = create_key(admin_key, permissions=["admin"])
    assert made.status_code == 201 and made.json()["permissions"] == ["admin"]


# -- keys per user ----------------------------------------------------------------------------


def test_keys_per_user_are_capped_and_revoked_keys_do_not_count(settings) -> None:
    settings.NIMBUS_MAX_KEYS_PER_USER = 3
    alice = api_user("alice")  # her first key
    made = [create_key(alice, name=f"key {n}") for n in range(2)]
    assert [response.status_code for response in made] == [201, 201]
    refused = create_key(alice, name="one too many")
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        "This user has 3 API keys, the most allowed (NIMBUS_MAX_KEYS_PER_USER): revoke one "
        "(DELETE /api/keys/{id}/) to create another; expired keys count until revoked."
    )
    with pytest.raises(CommandError, match="This user has 3 API keys, the most allowed"):
        create_key_command("alice@example.com")
    assert ApiKey.objects.auth("alice").count() == 3

    revoked = made[0].json()["key_hash"]
    assert alice.client.delete(f"/api/keys/{revoked}/").status_code == 204
    assert create_key(alice, name="in its place").status_code == 201
    assert create_key(api_user("bob")).status_code == 201  # per user
    assert ApiKey.objects.auth("alice").count() == 3


def test_the_cap_is_kept_by_the_keys_reservations_not_the_metadata_rows(settings) -> None:
    settings.NIMBUS_MAX_KEYS_PER_USER = 2
    User.objects.system().create(user_id="alice", email="alice@example.com")
    scope = Scope(conf.get_connection(), "alice")
    for n in range(2):
        issue_api_key(scope, name=f"key {n}", owner_email=None, owner_is_admin=False)
    # Rows lagging behind KV, as while another create is under way: the count sees no key.
    conf.sql_database().execute("DELETE FROM apikey_meta")
    with pytest.raises(Rejected, match="This user has 2 API keys"):
        issue_api_key(scope, name="past the cap", owner_email=None, owner_is_admin=False)


def test_keys_created_at_once_never_exceed_the_cap(settings) -> None:
    settings.NIMBUS_MAX_KEYS_PER_USER = 3
    User.objects.system().create(user_id="alice", email="alice@example.com")
    scope = Scope(conf.get_connection(), "alice")
    start = threading.Barrier(8)
    outcomes: list[str] = []

    def create(n: int) -> None:
        start.wait()
        try:
            issue_api_key(scope, name=f"key {n}", owner_email=None, owner_is_admin=False)
        except Rejected:
            outcomes.append("refused")
        else:
            outcomes.append("made")

    threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["made"] * 3 + ["refused"] * 5
    assert ApiKey.objects.auth("alice").count() == 3


@pytest.mark.parametrize("value", [0, -1, "20", True, None])
def test_the_cap_setting_must_be_a_positive_number(settings, value: object) -> None:
    settings.NIMBUS_MAX_KEYS_PER_USER = value
    alice = api_user("alice")
    with pytest.raises(ImproperlyConfigured, match="NIMBUS_MAX_KEYS_PER_USER"):
        create_key(alice)
    from nimbus.checks import check_api_keys

    assert [message.id for message in check_api_keys()] == ["nimbus.E009"]


# -- expiry ---------------------------------------------------------------------------------


def test_a_key_can_expire(now: list[str]) -> None:
    alice = api_user("alice")
    made = create_key(alice, name="temporary", expires_in_days=2)
    assert made.status_code == 201
    assert made.json()["expires_at"] == "2024-09-04T13:45:00.000Z"
    listed = alice.client.get("/api/keys/").json()["data"]
    expiry = {row["name"]: row["expires_at"] for row in listed}
    assert expiry["temporary"] == "2024-09-04T13:45:00.000Z"
    assert [value for name, value in expiry.items() if name != "temporary"] == [None]
    temporary = bearer(made.json()["key"])
    me = temporary.get("/api/me/").json()
    assert me["key"]["expires_at"] == "2024-09-04T13:45:00.000Z"
    now[0] = "2024-09-04T13:44:59.999Z"
    assert temporary.get("/api/me/").status_code == 200
    now[0] = "2024-09-04T13:45:00.000Z"
    expired = temporary.get("/api/me/")
    assert expired.status_code == 401
    assert expired.json()["detail"] == "This API key has expired."
    assert alice.client.get("/api/me/").status_code == 200  # keys without expiry never do


def test_an_expiry_is_a_number_of_days_or_a_moment_to_come(now: list[str]) -> None:
    alice = api_user("alice")
    at = create_key(alice, expires_at="2024-12-31T00:00:00+01:00")
    assert at.status_code == 201 and at.json()["expires_at"] == "2024-12-30T23:00:00.000Z"
    past = create_key(alice, expires_at="2024-09-02T13:44:59Z")
    assert past.status_code == 400
    assert past.json() == {"expires_at": ["Must be in the future."]}
    both = create_key(alice, expires_at="2024-12-31T00:00:00Z", expires_in_days=3)
    assert both.status_code == 400
    assert both.json() == {"non_field_errors": ["Give expires_in_days or expires_at, not both."]}
    assert create_key(alice, expires_in_days=0).status_code == 400


def test_a_key_creates_keys_that_expire_no_later_than_itself(now: list[str]) -> None:
    alice = api_user("alice")
    temporary = bearer(create_key(alice, expires_in_days=2).json()["key"])
    child = create_key(temporary)
    assert child.status_code == 201 and child.json()["expires_at"] == "2024-09-04T13:45:00.000Z"
    assert create_key(temporary, expires_in_days=1).status_code == 201
    longer = create_key(temporary, expires_in_days=3)
    assert longer.status_code == 400
    assert longer.json() == {
        "expires_at": [
            "No later than 2024-09-04T13:45:00.000Z: a key cannot create a key that expires "
            "after it does."
        ]
    }


def test_the_command_makes_keys_that_expire(now: list[str]) -> None:
    secret = create_key_command("ops@example.com", "--create-user", "--expires-in-days", "7")
    stored = ApiKey.objects.system().get(key_hash(secret))
    assert stored.get("expires_at") == "2024-09-09T13:45:00.000Z"
    with pytest.raises(CommandError, match="--expires-in-days must be a positive number"):
        create_key_command("ops@example.com", "--expires-in-days", "0")
