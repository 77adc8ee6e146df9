"""The rest of the storage contract on every KV backend: query/count over JSON values,
metadata, namespaces and clear. Capability-dependent cases skip only by flag."""

from __future__ import annotations

import json

import pytest

from datastore import InvalidKey, InvalidValue, KVStore, NotSupported, PutItem
from datastore.backends._query import Filter, matches, sort_key

NS = "TESTNS"

DOCS = {
    "u1": {"name": "Ada", "age": 36, "tags": ["math", "poet"], "admin": True, "team": {"id": 1}},
    "u2": {"name": "Bob", "age": 25, "tags": ["ops"], "admin": False, "team": {"id": 2}},
    "u3": {"name": "Cy", "age": 41.5, "tags": [], "admin": False, "nick": None},
    "u4": {"name": "dana", "age": "unknown", "tags": ["poet"], "team": {"id": 1}},
    "u5": {"name": "Eve", "tags": ["sec", 7], "admin": True},
}


@pytest.fixture
def people(kv: KVStore) -> KVStore:
    kv.put_many(NS, [PutItem(key, json.dumps(doc)) for key, doc in DOCS.items()])
    kv.put(NS, "not-json", b"\x00\xff")
    kv.put(NS, "a-list", b"[1, 2]")
    return kv


CASES = [
    {"field": "age", "operator": "gte", "value": 36},
    {"field": "age", "operator": "lt", "value": 30},
    {"field": "age", "operator": "eq", "value": "unknown"},
    {"field": "name", "operator": "ne", "value": "Bob"},
    {"field": "name", "operator": "startswith", "value": "E"},
    {"field": "name", "operator": "endswith", "value": "a"},
    {"field": "name", "operator": "contains", "value": "y"},
    {"field": "tags", "operator": "contains", "value": "poet"},
    {"field": "tags", "operator": "contains", "value": 7},
    {"field": "admin", "operator": "eq", "value": True},
    {"field": "admin", "operator": "eq", "value": False},
    {"field": "nick", "operator": "eq", "value": None},
    {"field": "nick", "operator": "ne", "value": None},
    {"field": "team.id", "operator": "eq", "value": 1},
    [
        {"field": "admin", "operator": "eq", "value": False},
        {"field": "age", "operator": "gt", "value": 30},
    ],
]


def expected_keys(rule) -> list[str]:
    rules = rule if isinstance(rule, list) else [rule]
    filters = [Filter(r["field"], r["operator"], r["value"]) for r in rules]
    return sorted(key for key, doc in DOCS.items() if matches(doc, filters))


@pytest.mark.parametrize("rule", CASES, ids=lambda r: json.dumps(r))
def test_query_and_count(people: KVStore, rule) -> None:
    hits = people.query(NS, rule, sort="name", limit=100)
    assert sorted(hit.key for hit in hits) == expected_keys(rule)
    assert people.count(NS, rule) == len(expected_keys(rule))
    for hit in hits:
        assert hit.value == DOCS[hit.key]


def test_query_spot_checks(people: KVStore) -> None:
    def keys(rule, **options) -> list[str]:
        return [hit.key for hit in people.query(NS, rule, **options)]

    assert keys({"field": "age", "operator": "gte", "value": 36}, sort="age") == ["u1", "u3"]
    assert keys({"field": "tags", "operator": "contains", "value": "poet"}, sort="-name") == [
        "u4",
        "u1",
    ]
    assert keys({"field": "admin", "operator": "eq", "value": True}, sort="name") == ["u1", "u5"]
    assert people.count(NS) == 5  # objects only: not the binary value or the array


def test_sorting_and_paging(people: KVStore) -> None:
    def order(sort: str) -> list[str]:
        return sorted(
            DOCS,
            key=lambda key: sort_key(DOCS[key], sort.lstrip("-"), key),
            reverse=sort.startswith("-"),
        )

    for sort in ["age", "-age", "name", "-name", "admin", "team.id", "missing"]:
        hits = people.query(NS, sort=sort, limit=100)
        assert [hit.key for hit in hits] == order(sort), sort
    page = people.query(NS, sort="name", limit=2, offset=1)
    assert [hit.key for hit in page] == ["u2", "u3"]
    assert people.query(NS, sort={"field": "name", "order": "desc"}, limit=1)[0].key == "u4"


def test_query_returns_metadata(kv: KVStore) -> None:
    kv.put(NS, "k", json.dumps({"x": 1}), metadata={"owner": "u1"})
    assert kv.query(NS, {"field": "x", "operator": "eq", "value": 1})[0].metadata == {"owner": "u1"}


def test_bad_queries_are_clear_errors(people: KVStore) -> None:
    bad = [
        {"field": "a b", "operator": "eq", "value": 1},
        {"field": "", "operator": "eq", "value": 1},
        {"field": "age", "operator": "like", "value": 1},
        {"field": "age", "operator": "eq", "value": [1]},
        {"field": "age", "operator": "gt", "value": None},
        {"field": "name", "operator": "startswith", "value": 3},
        {"field": "age", "op": "eq"},
    ]
    for rule in bad:
        with pytest.raises(InvalidValue):
            people.query(NS, rule)
    with pytest.raises(InvalidValue):
        people.query(NS, sort="bad field")
    with pytest.raises(InvalidValue):
        people.query(NS, limit=0)


def test_metadata_can_be_set_and_merged(kv_backend) -> None:
    kv = kv_backend.store
    ttl = max(60, kv.limits.min_ttl_seconds)
    kv.put(NS, "k", b"value", metadata={"a": 1}, ttl=ttl)
    assert kv.set_metadata(NS, "k", {"b": 2}, merge=True) is True
    assert kv.get_metadata(NS, "k") == {"a": 1, "b": 2}
    assert kv.set_metadata(NS, "k", {"c": 3}) is True
    entry = kv.get(NS, "k", include_metadata=True)
    assert entry is not None
    assert (entry.value, entry.metadata) == (b"value", {"c": 3})
    assert entry.expires_at is not None  # the TTL survives a metadata change
    assert kv.set_metadata(NS, "missing", {"a": 1}) is False
    with pytest.raises(InvalidValue):
        kv.set_metadata(NS, "k", {"big": "x" * 2000})
    assert kv.get_metadata(NS, "k") == {"c": 3}
    assert kv.get(NS, "k") == b"value"


def test_clear_empties_one_namespace(kv: KVStore) -> None:
    kv.put_many(NS, [PutItem(f"k{i}", b"v") for i in range(30)])
    kv.put("NS_TWO", "keep", b"v")
    assert kv.clear(NS) == 30
    assert kv.list(NS, limit=10).keys == []
    assert kv.get("NS_TWO", "keep") == b"v"


def test_clear_removes_every_key_of_a_large_namespace(kv: KVStore) -> None:
    kv.put_many(NS, [PutItem(f"k{number:05d}", b"v") for number in range(5000)])
    assert kv.clear(NS) == 5000
    assert kv.list(NS, limit=10).keys == []


def test_namespace_management(kv: KVStore) -> None:
    if not kv.supports_namespace_management:
        with pytest.raises(NotSupported):
            kv.create_namespace("NS_ONE")
        assert "NS_ONE" in kv.list_namespaces()
        pytest.skip(f"{kv.backend_name} namespaces are managed outside the store")
    assert kv.create_namespace("NS_ONE") is True
    assert kv.create_namespace("NS_ONE") is False
    assert "NS_ONE" in kv.list_namespaces() and "NS_ONE" in kv.status().namespaces
    kv.put("NS_ONE", "k", b"v")
    with pytest.raises(InvalidValue, match="not empty"):
        kv.delete_namespace("NS_ONE")
    assert kv.get("NS_ONE", "k") == b"v"
    assert kv.delete_namespace("NS_ONE", recursive=True) is True
    assert "NS_ONE" not in kv.list_namespaces()
    assert kv.get("NS_ONE", "k") is None
    assert kv.delete_namespace("NS_ONE") is False
    for bad in ["a/b", "a:b", "a*b", ""]:
        with pytest.raises(InvalidKey):
            kv.create_namespace(bad)
