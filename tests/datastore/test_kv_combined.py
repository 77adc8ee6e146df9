"""``KVStore.combine()``: reads and increments gathered, one request on the gateway, one call
after the other elsewhere, with the same answers on every backend."""

from __future__ import annotations

import json

import pytest

from datastore import Datastore, InvalidValue, KVStore, NotFound, Unavailable
from tests.support import Backend

NS = "TESTNS"


def test_gathered_calls_answer_as_the_plain_calls_do(kv: KVStore) -> None:
    kv.put(NS, "apikey:k1", json.dumps({"user_id": "u1"}))
    kv.put(NS, "user:u1", json.dumps({"email": "a@example.com"}))
    combined = kv.combine()
    key = combined.get_entries(NS, ["apikey:k1", "apikey:missing"])
    owner = combined.get_entries_from(key, NS, "user:{user_id}")
    counted = combined.incr(NS, "hits", 2)
    with kv.round_trips.track() as trips:
        combined.send()
        assert set(key.result()) == {"apikey:k1"}
        assert json.loads(owner.result()["user:u1"].value) == {"email": "a@example.com"}
        assert counted.result() == 2
    one_request = kv.backend_name == "gateway"
    assert trips.count == (1 if one_request else 3 + (kv.backend_name == "cloudflare"))
    assert kv.get(NS, "hits") == b"2"


def test_a_read_naming_no_key_reads_nothing(kv: KVStore) -> None:
    kv.put(NS, "apikey:k1", json.dumps({"name": "no owner"}))
    kv.put(NS, "apikey:k2", b"\xff not json")
    combined = kv.combine()
    keys = combined.get_entries(NS, ["apikey:k1", "apikey:k2", "apikey:none"])
    owners = combined.get_entries_from(keys, NS, "user:{user_id}")
    assert owners.result() == {}
    assert set(keys.result()) == {"apikey:k1", "apikey:k2"}


def test_the_first_result_sends_everything_in_order(kv: KVStore) -> None:
    combined = kv.combine()
    first = combined.incr(NS, "n")
    second = combined.incr(NS, "n")
    assert second.result() == 2 and first.result() == 1


def test_errors_stay_with_their_own_call(kv_backend: Backend) -> None:
    kv = kv_backend.store
    kv.put(NS, "text", b"hello")
    combined = kv.combine()
    bad = combined.incr(NS, "text")  # not an integer
    good = combined.get_entries(NS, ["text"])
    combined.send()
    with pytest.raises(InvalidValue, match="integer"):
        bad.result()
    assert good.result()["text"].value == b"hello"


def test_a_dependent_read_takes_a_read_of_the_same_request(kv: KVStore) -> None:
    if kv.backend_name != "gateway":
        pytest.skip("elsewhere any pending read will do: the calls run one by one")
    source = kv.combine().get_entries(NS, ["a"])
    with pytest.raises(InvalidValue, match="same request"):
        kv.combine().get_entries_from(source, NS, "user:{user_id}")


def test_object_reads_with_their_reference_and_a_counter(
    facade: tuple[Datastore, Backend],
) -> None:
    ds, _ = facade
    system = ds.system()
    system.put("APIKEY", "k1", {"user_id": "u1"}, auth=[])
    system.put("USER", "u1", {"email": "a@example.com"}, auth=["u1"])
    reads = system.combine()
    key = reads.read("APIKEY", "k1")
    owner = reads.read_referenced(key, "user_id", "USER")
    missing = reads.read("APIKEY", "nope")
    nobody = reads.read_referenced(missing, "user_id", "USER")
    counted = reads.kv.incr("NIMBUS_CACHE", "rl:api:key_k1") if reads.kv is not None else None
    with ds.round_trips.track() as trips:
        reads.send()
    owner_found = owner.result()
    assert owner_found is not None and owner_found.data["email"] == "a@example.com"
    assert key.result() is not None and missing.result() is None and nobody.result() is None
    if counted is not None:
        assert counted.result() == 1
    if ds.kv is not None and ds.kv.backend_name == "gateway":
        assert trips.count == 1
    # a user scope sees only what it owns
    alice = ds.auth("alice").combine()
    assert alice.read("APIKEY", "k1").result() is None


def test_an_unavailable_store_fails_each_gathered_call(kv: KVStore, monkeypatch) -> None:
    if kv.backend_name != "gateway":
        pytest.skip("a transport failure of the gateway's one request")
    import httpx

    def refuse(*args: object, **kwargs: object) -> None:
        raise httpx.ConnectError("refused")

    monkeypatch.setattr(kv.client._client, "post", refuse)  # type: ignore[attr-defined]
    monkeypatch.setattr(kv.client, "sleep", lambda seconds: None)  # type: ignore[attr-defined]
    combined = kv.combine()
    first, second = combined.get_entries(NS, ["a"]), combined.incr(NS, "n")
    for pending in (first, second):
        with pytest.raises((Unavailable, NotFound)):
            pending.result()
