"""The data-structures spec's derived keys, as a Worker reads them from KV: the
``projects:{user_id}`` and ``apikeys:{user_id}`` lists, ``email:{email}`` lookups and the
``created`` stamps; kept by the save path, checked and repaired by ``nimbus_sync``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from datamodel import ids
from nimbus import conf
from nimbus.models import EmailLookup, Project, User, key_hash
from tests.nimbus.api_support import api_user, make_project

pytestmark = pytest.mark.usefixtures("domain")


def kv_json(namespace: str, key: str) -> Any:
    raw = conf.kv_store().get(namespace, key)
    return None if raw is None else json.loads(raw)


def test_a_users_projects_are_listed_as_they_come_and_go() -> None:
    user = api_user()
    first, second = make_project(user, "one"), make_project(user, "two")
    assert sorted(kv_json("NIMBUS_USERS", f"projects:{user.user_id}")) == sorted([first, second])
    assert user.client.delete(f"/api/projects/{first}/").status_code == 204
    assert kv_json("NIMBUS_USERS", f"projects:{user.user_id}") == [second]
    assert user.client.post(f"/api/projects/{first}/restore/").status_code == 200
    assert sorted(kv_json("NIMBUS_USERS", f"projects:{user.user_id}")) == sorted([first, second])
    other = api_user()
    assert kv_json("NIMBUS_USERS", f"projects:{other.user_id}") is None


def test_a_users_keys_are_listed_by_hash() -> None:
    user = api_user()
    made = user.client.post("/api/keys/", {"name": "ci"}, format="json")
    assert made.status_code == 201, made.json()
    secret = made.json()["key"]
    listed = kv_json("NIMBUS_USERS", f"apikeys:{user.user_id}")
    assert sorted(listed) == sorted(
        [f"sha256:{key_hash(user.secret)}", f"sha256:{key_hash(secret)}"]
    )
    stored = kv_json("NIMBUS_KEYS", f"apikey:{key_hash(secret)}")
    assert stored["user_id"] == user.user_id and stored["created"] and stored["active"] is True
    assert user.client.delete(f"/api/keys/{key_hash(secret)}/").status_code == 204
    assert kv_json("NIMBUS_USERS", f"apikeys:{user.user_id}") == [f"sha256:{key_hash(user.secret)}"]


def test_the_email_lookup_follows_the_user() -> None:
    users = User.objects.system()
    user = users.create(email="ada@example.com")
    lookup = kv_json("NIMBUS_EMAILS", "email:ada@example.com")
    assert lookup["user_id"] == user.pk and lookup["created"] == user.get("created")
    user.set("email", "ada@lovelace.example")
    user.save()
    assert kv_json("NIMBUS_EMAILS", "email:ada@example.com") is None
    assert kv_json("NIMBUS_EMAILS", "email:ada@lovelace.example")["user_id"] == user.pk
    user.delete()  # soft: the user keeps their email, and the lookup
    assert kv_json("NIMBUS_EMAILS", "email:ada@lovelace.example")["user_id"] == user.pk
    users.get(user.pk, include_deleted=True).delete(hard=True)
    assert kv_json("NIMBUS_EMAILS", "email:ada@lovelace.example") is None


def test_the_spec_created_stamps_are_written() -> None:
    user = api_user()
    project_id = make_project(user)
    batch = user.client.post(
        f"/api/projects/{project_id}/batches/",
        {"pages": [{"source_path": "a.html"}]},
        format="json",
    ).json()
    project = kv_json("NIMBUS_PROJECTS", f"project:{project_id}")
    assert project["created"] == project["created_at"]
    stored = kv_json("NIMBUS_BATCHES", f"batch:{project_id}:{batch['batch_id']}")
    assert stored["created"] == stored["created_at"]
    made = User.objects.system().create(email="created@example.com")
    assert kv_json("NIMBUS_USERS", f"user:{made.pk}")["created"] == made.get("created_at")


MODELS = ("--model", "USER", "--model", "EMAIL", "--model", "PROJECT", "--model", "APIKEY")


def sync(*args: str) -> dict[str, Any]:
    from io import StringIO

    out = StringIO()
    call_command("nimbus_sync", "--json", *MODELS, *args, stdout=out)
    return json.loads(out.getvalue())


def test_nimbus_sync_repairs_what_its_check_reports_in_lists_and_lookups() -> None:
    user = api_user()
    project_id = make_project(user)
    ada = User.objects.system().create(email="ada@example.com")
    store = conf.get_datastore()
    store.auth(user.user_id).list_remove("projects", user.user_id, project_id)
    store.auth(user.user_id).list_add("apikeys", user.user_id, "sha256:" + "0" * 64)
    EmailLookup.objects.system().get("ada@example.com").delete()
    EmailLookup.objects.system().create(email="nobody@example.com", user_id="user_gone")

    with pytest.raises(CommandError, match="4 lists or email lookups differ") as info:
        call_command("nimbus_sync", *MODELS, "--check")
    assert info.value.returncode == 1
    found = sync()
    assert {(r["listing"], r["drifted"]) for r in found["listings"]} == {
        ("projects", 1),
        ("apikeys", 1),
    }
    assert (found["lookups"]["missing"], found["lookups"]["stale"]) == (1, 1)

    repaired = sync("--repair")
    assert sum(r["repaired"] for r in repaired["listings"]) == 2
    assert repaired["lookups"]["repaired"] == 2
    call_command("nimbus_sync", *MODELS, "--check")  # clean: exits 0
    assert kv_json("NIMBUS_USERS", f"projects:{user.user_id}") == [project_id]
    assert kv_json("NIMBUS_USERS", f"apikeys:{user.user_id}") == [f"sha256:{key_hash(user.secret)}"]
    assert kv_json("NIMBUS_EMAILS", "email:ada@example.com")["user_id"] == ada.pk
    assert kv_json("NIMBUS_EMAILS", "email:nobody@example.com") is None
    assert Project.objects.auth(user.user_id).count() == 1


def test_optional_fields_are_left_out_while_empty() -> None:
    """The spec's ``optimization?``, ``processing?``, ``result?`` and ``error?`` are absent,
    not null, while they do not apply."""
    user = api_user()
    project_id = make_project(user)
    base = f"/api/projects/{project_id}"
    batch = {"pages": [{"source_path": "a.html"}, {"source_path": "b.html"}]}
    assert user.client.post(f"{base}/batches/", batch, format="json").status_code == 201
    page_ids = [ids.page_id(project_id, path) for path in ("a.html", "b.html")]

    def page(page_id: str) -> dict[str, Any]:
        return kv_json("NIMBUS_PAGES", f"page:{project_id}:{page_id}")

    def shown(page_id: str) -> set[str]:
        status = kv_json("NIMBUS_STATUS", f"status:{project_id}:{page_id}")
        return {"processing", "result", "error"} & set(status)

    for page_id in page_ids:
        assert shown(page_id) == set() and "optimization" not in page(page_id)
    first = user.client.post(f"{base}/queue/claim/").json()["page_id"]
    assert shown(first) == {"processing"}
    result = {"model": "gpt-4", "confidence": 0.9, "changes": 2, "optimized_blocks": []}
    acked = user.client.post(f"{base}/queue/{first}/ack/", {"result": result}, format="json")
    assert acked.status_code == 200
    assert shown(first) == {"result"} and page(first)["optimization"]["changes"] == 2
    second = user.client.post(f"{base}/queue/claim/").json()["page_id"]
    failed = user.client.post(f"{base}/queue/{second}/fail/", {"error": "boom"}, format="json")
    assert failed.json()["retry"] is True  # queued again, showing the error
    assert shown(second) == {"error"} and "optimization" not in page(second)
