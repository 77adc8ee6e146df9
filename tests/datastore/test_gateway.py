"""The gateway Worker's protocol and its refusals, on the Worker users deploy (worker/gateway.js)
run by Miniflare on real KV and D1 bindings.

Every refused request gets a 4xx with a JSON error and writes nothing."""

from __future__ import annotations

import json
import multiprocessing
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from datastore import AccessDenied, InvalidValue, PutItem, QueryError, TooLarge
from datastore.backends._gateway_http import GatewayClient, sign
from datastore.backends.gateway import GatewayD1Database, GatewayKVStore
from tests.cloudflare.local_api import GATEWAY_PREVIOUS_SECRET, GATEWAY_SECRET, LocalCloudflare

NS = "TESTNS"


@pytest.fixture
def gateway(cloudflare_api: LocalCloudflare) -> Iterator[LocalCloudflare]:
    cloudflare_api.reset()
    yield cloudflare_api


@pytest.fixture
def kv(gateway: LocalCloudflare) -> GatewayKVStore:
    return GatewayKVStore(**gateway.gateway_options())


def body(*operations: dict[str, Any]) -> bytes:
    return json.dumps({"nonce": secrets.token_hex(8), "operations": list(operations)}).encode()


def put(key: str, text: str = "v") -> dict[str, Any]:
    return {"op": "kv.put", "ns": NS, "items": [{"key": key, "value": {"text": text}}]}


def send(
    gateway: LocalCloudflare,
    content: bytes,
    *,
    secret: str = GATEWAY_SECRET,
    timestamp: float | None = None,
    signed: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST /v1/run, signed over ``signed`` (default: the content sent)."""
    stamp = str(int(time.time() if timestamp is None else timestamp))
    signature = sign(secret, "POST", "/v1/run", stamp, content if signed is None else signed)
    all_headers = {"x-nimbus-timestamp": stamp, "x-nimbus-signature": signature}
    if headers is not None:
        all_headers = headers
    return httpx.post(gateway.url + "v1/run", content=content, headers=all_headers, timeout=60)


def refused(response: httpx.Response, status: int, kind: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["type"] == kind
    assert response.json()["error"]["message"]


def test_a_signed_request_runs_its_operations_in_order(gateway, kv) -> None:
    response = send(gateway, body(put("a"), {"op": "kv.get", "ns": NS, "keys": ["a", "b"]}))
    assert response.status_code == 200
    first, second = response.json()["results"]
    assert first == {"ok": True, "value": {"count": 1}}
    assert second["value"]["entries"] == {"a": {"value": {"text": "v"}, "metadata": None}}


def test_the_previous_secret_is_accepted_during_a_rotation(gateway, kv) -> None:
    assert send(gateway, body(put("a")), secret=GATEWAY_PREVIOUS_SECRET).status_code == 200
    assert kv.get(NS, "a") == b"v"


@pytest.mark.parametrize(
    ("case", "status", "kind"),
    [
        ("unsigned", 401, "unsigned"),
        ("wrong secret", 401, "bad_signature"),
        ("malformed signature", 401, "bad_signature"),
        ("stale", 401, "stale"),
        ("from the future", 401, "stale"),
        ("tampered", 401, "bad_signature"),
    ],
)
def test_requests_not_signed_now_with_the_secret_are_refused(
    gateway, kv, case: str, status: int, kind: str
) -> None:
    content = body(put("a"))
    if case == "unsigned":
        response = send(gateway, content, headers={})
    elif case == "wrong secret":
        response = send(gateway, content, secret="not-the-secret")
    elif case == "malformed signature":
        stamp = str(int(time.time()))
        response = send(
            gateway,
            content,
            headers={"x-nimbus-timestamp": stamp, "x-nimbus-signature": "v1=abc"},
        )
    elif case == "stale":
        response = send(gateway, content, timestamp=time.time() - 301)
    elif case == "from the future":
        response = send(gateway, content, timestamp=time.time() + 301)
    else:
        response = send(gateway, body(put("a", "changed")), signed=content)
    refused(response, status, kind)
    assert kv.get(NS, "a") is None


def test_a_replayed_request_is_refused_and_runs_once(gateway, kv) -> None:
    content = body({"op": "kv.incr", "ns": NS, "key": "n"})
    stamp = str(int(time.time()))
    headers = {
        "x-nimbus-timestamp": stamp,
        "x-nimbus-signature": sign(GATEWAY_SECRET, "POST", "/v1/run", stamp, content),
    }
    assert send(gateway, content, headers=headers).status_code == 200
    refused(send(gateway, content, headers=headers), 401, "replayed")
    assert kv.get(NS, "n") == b"1"


def test_an_oversized_body_is_refused_before_it_is_read(gateway, kv) -> None:
    limit = GatewayClient(gateway.url, GATEWAY_SECRET).status()["limits"]["max_body_bytes"]
    content = body(put("a", "x" * limit))
    refused(send(gateway, content), 413, "too_large")
    assert kv.get(NS, "a") is None


def test_unknown_operations_and_too_many_operations_write_nothing(gateway, kv) -> None:
    refused(send(gateway, body(put("a"), {"op": "kv.drop_everything"})), 400, "unknown_operation")
    refused(send(gateway, body(*[put(f"k{i}") for i in range(101)])), 400, "too_many_operations")
    statements = [{"sql": "SELECT 1", "params": []}] * 1000
    refused(
        send(gateway, body(put("a"), {"op": "d1.batch", "statements": statements})),
        413,
        "over_limit",
    )
    refused(send(gateway, b"not json"), 400, "invalid")
    assert kv.list(NS).keys == []


def test_a_failed_operation_skips_the_ones_that_require_it(gateway, kv) -> None:
    response = send(
        gateway,
        body(
            {"op": "d1.batch", "statements": [{"sql": "SELEKT 1", "params": []}]},
            put("after"),
            {**put("independent"), "requires": []},
        ),
    )
    failed, skipped, ran = response.json()["results"]
    assert failed["error"]["type"] == "query"
    assert skipped["error"]["type"] == "skipped"
    assert ran["ok"]
    assert kv.get(NS, "after") is None and kv.get(NS, "independent") == b"v"


def test_keys_from_rows_and_from_values(gateway, kv) -> None:
    kv.put(NS, "key:k1", json.dumps({"user_id": "u1"}))
    kv.put(NS, "user:u1", json.dumps({"email": "a@example.com"}))
    results = GatewayClient(gateway.url, GATEWAY_SECRET).run(
        [
            {"op": "kv.get", "ns": NS, "keys": ["key:k1"]},
            {"op": "kv.get", "ns": NS, "keys_from": {"op": 0, "template": "user:{user_id}"}},
            {
                "op": "d1.batch",
                "statements": [{"sql": "SELECT 'k1' AS id UNION SELECT NULL", "params": []}],
            },
            {"op": "kv.get", "ns": NS, "keys_from": {"op": 2, "template": "key:{id}"}},
        ],
        what="test",
        idempotent=True,
    )
    assert list(results[1]["entries"]) == ["user:u1"]
    assert list(results[3]["entries"]) == ["key:k1"]  # a row with a NULL id names no key


def test_binary_values_and_typed_parameters_round_trip(gateway, kv) -> None:
    kv.put(NS, "bin", b"\xff\x00\xfe")
    kv.put(NS, "text", "é")
    assert kv.get_many(NS, ["bin", "text"]) == {"bin": b"\xff\x00\xfe", "text": "é".encode()}
    sql = GatewayD1Database(client=kv.client)
    # D1 binds every JavaScript number as a double: a declared INTEGER column keeps integers
    sql.execute("CREATE TABLE t (i INTEGER, r REAL, b INTEGER, n TEXT, blob BLOB)")
    sql.execute("INSERT INTO t VALUES (?, ?, ?, ?, ?)", [7, 1.5, True, None, b"\x00\x01"])
    (row,) = sql.execute(
        "SELECT i, r, b, n, blob, typeof(i) ti, typeof(r) tr, typeof(n) tn, typeof(blob) tb FROM t"
    )
    assert row == {
        "i": 7,
        "r": 1.5,
        "b": 1,
        "n": None,
        "blob": b"\x00\x01",
        "ti": "integer",
        "tr": "real",
        "tn": "null",
        "tb": "blob",
    }
    with pytest.raises(InvalidValue, match="2\\*\\*53"):
        sql.execute("SELECT ?", [2**60])


def test_client_errors_are_typed(gateway, kv) -> None:
    with pytest.raises(AccessDenied, match="bad_signature"):
        GatewayKVStore(gateway.url, "wrong-secret", [NS], client=None).get(NS, "a")
    sql = GatewayD1Database(client=kv.client)
    with pytest.raises(QueryError, match="no such table"):
        sql.execute("SELECT * FROM nope")
    with pytest.raises(TooLarge, match="1000"):
        sql.batch([("SELECT 1", [])] * 1000)


def test_counters_are_atomic_and_readable_from_kv(gateway, kv) -> None:
    assert [kv.incr(NS, "hits", ttl=60) for _ in range(3)] == [1, 2, 3]
    entry = kv.get_entry(NS, "hits")
    assert entry is not None and entry.value == b"3" and entry.metadata is None
    assert entry.expires_at == pytest.approx(time.time() + 60, abs=5)
    assert kv.delete(NS, "hits")
    assert kv.incr(NS, "hits") == 1  # a deleted counter starts again


def test_the_client_mirrors_the_plan_and_splits_work_to_fit(gateway, kv) -> None:
    free = GatewayD1Database(gateway.url, GATEWAY_SECRET, plan="free")
    with free.round_trips.track() as trips, pytest.raises(TooLarge, match="free"):
        free.batch([("SELECT 1", [])] * 50)  # 49 besides the replay check
    assert trips.count == 0
    assert len(free.batch([("SELECT 1", [])] * 49)) == 49
    small = GatewayKVStore(
        gateway.url, GATEWAY_SECRET, [NS], max_body_bytes=256 * 1024, plan="paid"
    )
    items = [PutItem(f"k{i}", b"x" * 20_000) for i in range(40)]  # ~1 MB: several requests
    with small.round_trips.track() as trips:
        small.put_many(NS, items)
    assert trips.count > 1
    assert len(kv.get_many(NS, [item.key for item in items])) == 40


def _read_in_child(kv: GatewayKVStore, parent_pool: int, answers: Any) -> None:
    value = kv.get(NS, "a")
    answers.put((value, id(kv.client._client) != parent_pool))  # type: ignore[attr-defined]


def test_a_forked_child_opens_its_own_connections(gateway, kv) -> None:
    kv.put(NS, "a", b"1")
    parent_pool = id(kv.client._client)  # type: ignore[attr-defined]
    context = multiprocessing.get_context("fork")
    answers = context.Queue()
    child = context.Process(target=_read_in_child, args=(kv, parent_pool, answers))
    child.start()
    child.join(30)
    assert answers.get(timeout=5) == (b"1", True)
    assert kv.get(NS, "a") == b"1"  # the parent's pool still works


def test_a_new_window_counts_from_zero_though_kv_still_holds_the_last_count(gateway, kv) -> None:
    assert [kv.incr(NS, "window", ttl=60) for _ in range(3)] == [1, 2, 3]
    # the window ends in D1; KV keeps its copy of the count a while longer (60 s at least)
    GatewayD1Database(client=kv.client).execute(
        "UPDATE _nimbus_counters SET expires_at = 0 WHERE key = ?", ["window"]
    )
    assert kv.get(NS, "window") == b"3"
    assert kv.incr(NS, "window", ttl=60) == 1
    assert kv.get(NS, "window") == b"1"
