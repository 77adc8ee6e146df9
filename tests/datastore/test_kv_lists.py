"""``KVStore.edit_list``: the spec's list layout (a JSON array of strings, its owners in the
metadata's ``_auth``), changed the same way on every backend; one request on the gateway."""

from __future__ import annotations

import json

import pytest

from datastore import InvalidValue, KVStore

NS = "NIMBUS_LISTS"


def stored(kv: KVStore, key: str) -> tuple[list[str], dict | None]:
    entry = kv.get_entry(NS, key)
    assert entry is not None
    return json.loads(entry.value), entry.metadata


def test_a_list_is_made_changed_and_cleared(kv: KVStore) -> None:
    assert kv.edit_list(NS, "projects:u1", "add", "p1", owner="u1") is True
    assert kv.edit_list(NS, "projects:u1", "add", "p2", owner="u1") is True
    assert kv.edit_list(NS, "projects:u1", "add", "p1", owner="u1") is False  # already there
    assert stored(kv, "projects:u1") == (["p1", "p2"], {"_auth": ["u1"]})
    assert kv.edit_list(NS, "projects:u1", "remove", "p1", owner="u1") is True
    assert kv.edit_list(NS, "projects:u1", "remove", "p1", owner="u1") is False
    assert stored(kv, "projects:u1") == (["p2"], {"_auth": ["u1"]})
    assert kv.edit_list(NS, "projects:u1", "clear", owner="u1") is True
    assert kv.get(NS, "projects:u1") is None
    assert kv.edit_list(NS, "projects:u1", "clear", owner="u1") is False


def test_only_its_owners_change_a_list_with_items(kv: KVStore) -> None:
    kv.edit_list(NS, "projects:u1", "add", "p1", owner="u1")
    assert kv.edit_list(NS, "projects:u1", "add", "p9", owner="u2") is None
    assert kv.edit_list(NS, "projects:u1", "clear", owner="u2") is None
    assert stored(kv, "projects:u1") == (["p1"], {"_auth": ["u1"]})
    assert kv.edit_list(NS, "projects:u1", "add", "p9") is True  # the system may
    # an emptied list belongs to whoever adds first
    kv.edit_list(NS, "projects:u1", "remove", "p1")
    kv.edit_list(NS, "projects:u1", "remove", "p9")
    assert kv.edit_list(NS, "projects:u1", "add", "x", owner="u2") is True
    assert stored(kv, "projects:u1") == (["x"], {"_auth": ["u2"]})


def test_a_value_that_is_not_a_list_is_refused_and_kept(kv: KVStore) -> None:
    kv.put(NS, "projects:u1", b'{"not": "a list"}')
    with pytest.raises(InvalidValue, match="does not hold a list"):
        kv.edit_list(NS, "projects:u1", "add", "p1", owner="u1")
    assert kv.get(NS, "projects:u1") == b'{"not": "a list"}'


def test_an_edit_is_one_request_on_the_gateway(kv: KVStore) -> None:
    with kv.round_trips.track() as trips:
        kv.edit_list(NS, "projects:u1", "add", "p1", owner="u1")
    assert trips.count == (1 if kv.backend_name == "gateway" else 2)  # else a read, a write
