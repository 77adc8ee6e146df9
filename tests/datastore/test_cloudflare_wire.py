"""Cloudflare REST backends against Cloudflare's published API: D1 parameters as strings with
their SQLite types kept, and bulk reads within the 25 MB cap (local API and mock transport)."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from typing import Any

import httpx
import jsonschema
import pytest

from datastore import PutItem
from datastore.backends.cloudflare import (
    CloudflareD1Database,
    CloudflareKVStore,
    bind_as_strings,
)
from tests.cloudflare.local_api import LocalCloudflare

NS = "TESTNS"

# POST /accounts/{account_id}/d1/database/{database_id}/query (and /raw): Cloudflare's published
# request body (api/resources/d1/subresources/database/methods/query): one statement or a batch,
# ``params`` an array of strings.
_STATEMENT = {
    "type": "object",
    "properties": {
        "sql": {"type": "string"},
        "params": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["sql"],
    "additionalProperties": False,
}
D1_QUERY_BODY = {
    "oneOf": [
        _STATEMENT,
        {
            "type": "object",
            "properties": {"batch": {"type": "array", "items": _STATEMENT}},
            "required": ["batch"],
            "additionalProperties": False,
        },
    ]
}


@pytest.fixture
def cloudflare(cloudflare_api: LocalCloudflare) -> LocalCloudflare:
    cloudflare_api.reset()
    cloudflare_api.requests_seen()
    return cloudflare_api


@pytest.fixture
def d1(cloudflare: LocalCloudflare) -> CloudflareD1Database:
    return CloudflareD1Database(**cloudflare.d1_options(sleep=lambda _: None))


@pytest.fixture
def kv(cloudflare: LocalCloudflare) -> CloudflareKVStore:
    return CloudflareKVStore(**cloudflare.kv_options(sleep=lambda _: None))


# -- D1 parameters -----------------------------------------------------------------------------


def test_the_local_api_refuses_parameters_that_are_not_strings(
    cloudflare: LocalCloudflare,
) -> None:
    """As Cloudflare does: its schema types ``params`` as strings."""
    url = f"{cloudflare.base_url}/accounts/test-account/d1/database/d1-test-db/raw"
    headers = {"Authorization": "Bearer test-token"}
    for params in ([1], [None], [True], [1.5], ["a", 2]):
        response = httpx.post(url, json={"sql": "SELECT ?", "params": params}, headers=headers)
        assert response.status_code == 400
        assert "Invalid input" in response.json()["errors"][0]["message"]
    ok = httpx.post(url, json={"sql": "SELECT ? AS v", "params": ["1"]}, headers=headers)
    assert ok.json()["result"][0]["results"]["rows"] == [["1"]]


def test_parameters_read_back_with_their_sqlite_type(d1: CloudflareD1Database) -> None:
    d1.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v)")  # v has no type affinity
    values: list[Any] = [7, -(2**63), 2**63 - 1, 0.5, 1.0, -2.5e-300, True, False, None, "12"]
    values += ["", "it's ?", "NULL"]
    for index, value in enumerate(values):
        d1.execute("INSERT INTO t (id, v) VALUES (?, ?)", [index, value])
    rows = d1.execute("SELECT id, typeof(v) AS type, v FROM t ORDER BY id")
    expected_types = ["integer"] * 3 + ["real"] * 3 + ["integer"] * 2 + ["null"] + ["text"] * 4
    assert [row["type"] for row in rows] == expected_types
    expected = [int(v) if isinstance(v, bool) else v for v in values]
    assert [row["v"] for row in rows[3:]] == expected[3:]  # JSON numbers: exact below 2**53
    assert d1.execute("SELECT v FROM t WHERE v = ?", [7]) == [{"v": 7}]
    assert d1.execute("SELECT count(*) AS n FROM t WHERE v IS ?", [None]) == [{"n": 1}]
    exact = d1.execute(
        "SELECT v = ? AS low, v = ? AS high FROM t WHERE id IN (1, 2)", [-(2**63), 2**63 - 1]
    )
    assert [row["low"] + row["high"] for row in exact] == [1, 1]


def test_floats_survive_exactly(d1: CloudflareD1Database) -> None:
    rng = random.Random(19)
    floats = [0.1, 1 / 3, math.pi, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308]
    floats += [-1.5, 2.0**80, 1e22, 1.538926306651322e-237]
    floats += [rng.uniform(-1e6, 1e6) for _ in range(40)]
    floats += [math.ldexp(rng.random(), rng.randint(-1000, 1000)) for _ in range(50)]
    for start in range(0, len(floats), 50):
        chunk = floats[start : start + 50]
        columns = ", ".join(f"typeof(?{i}) AS t{i - 1}, ?{i} AS v{i - 1}" for i in range(1, 51))
        row = d1.execute(f"SELECT {columns}", chunk)[0]
        assert [row[f"v{i}"] for i in range(len(chunk))] == chunk
        assert {row[f"t{i}"] for i in range(len(chunk))} == {"real"}


def test_placeholders_in_literals_comments_and_numbered_ones(d1: CloudflareD1Database) -> None:
    row = d1.execute(
        "SELECT '?' AS q, \"?\" AS n, ?2 AS b, ? AS c, ?1 AS a /* ? */ -- ?\n",
        [1, None, 2.5],
    )
    # '?' is a literal; "?" falls back to a string literal in SQLite; ?2, then a bare ? is ?3
    assert row == [{"q": "?", "n": "?", "b": None, "c": 2.5, "a": 1}]


def test_bind_as_strings_rewrites_only_real_placeholders() -> None:
    sql, params = bind_as_strings("SELECT ?, '?', ? -- ?", [1, "x"])
    assert (sql, params) == ("SELECT CAST(?1 AS INTEGER), '?', ?2 -- ?", ["1", "x"])
    assert bind_as_strings("SELECT ?, ?", ["a", "b"]) == ("SELECT ?, ?", ["a", "b"])
    assert bind_as_strings("SELECT ?3, ?, ?1, ?2", [None, 1.5, True, 2]) == (
        "SELECT CAST(?3 AS INTEGER), CAST(?4 AS INTEGER), NULLIF(?1, ?1), (CAST(?2 AS REAL) / 2)",
        ["", "3", "1", "2"],
    )
    assert bind_as_strings("SELECT ?", [2.0**70]) == (
        f"SELECT (CAST(?1 AS REAL) * {2**62} * {2**8})",
        ["1"],
    )


def mock_d1(handler: Callable[[httpx.Request], httpx.Response]) -> CloudflareD1Database:
    return CloudflareD1Database(
        "acct",
        "token",
        "db",
        base_url="https://cloudflare.test/client/v4",
        transport=httpx.MockTransport(handler),
        sleep=lambda _: None,
    )


def test_d1_request_bodies_follow_the_published_schema() -> None:
    bodies: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        jsonschema.validate(body, D1_QUERY_BODY)
        result = [
            {"results": {"columns": [], "rows": []}, "success": True, "meta": {}}
            for _ in body["batch"]
        ]
        return httpx.Response(200, json={"success": True, "errors": [], "result": result})

    d1 = mock_d1(handler)
    d1.execute("INSERT INTO t VALUES (?, ?, ?, ?, ?)", [1, 2.5, True, None, "s"])
    d1.batch([("SELECT ?", [None]), ("UPDATE t SET a = ? WHERE b = ?", [False, 10**18])])
    d1.execute("SELECT 1")
    assert len(bodies) == 3
    assert bodies[0]["batch"][0]["params"] == ["1", "5", "1", "", "s"]


# -- KV bulk reads within the 25 MB cap ----------------------------------------------------------

MIB = 1024 * 1024


def _big(index: int) -> bytes:
    return (f"{index:04d}" * (MIB // 4)).encode()


def test_the_local_api_caps_a_bulk_read_at_25_mb(
    kv: CloudflareKVStore, cloudflare: LocalCloudflare
) -> None:
    kv.put_many(NS, [PutItem(f"big{i}", _big(i)) for i in range(26)])
    url = f"{cloudflare.base_url}/accounts/test-account/storage/kv/namespaces/ns-testns/bulk/get"
    response = httpx.post(
        url,
        json={"keys": [f"big{i}" for i in range(26)], "type": "text"},
        headers={"Authorization": "Bearer test-token"},
        timeout=60,
    )
    assert response.status_code == 413
    assert "exceeds the limit of 25MB" in response.json()["errors"][0]["message"]


def test_large_values_are_read_and_deleted_within_the_cap(
    kv: CloudflareKVStore, cloudflare: LocalCloudflare
) -> None:
    keys = [f"big{i:02d}" for i in range(30)]
    kv.put_many(NS, [PutItem(key, _big(i)) for i, key in enumerate(keys)])
    values = kv.get_many(NS, [*keys, "missing"])
    assert values == {key: _big(i) for i, key in enumerate(keys)}
    entries = kv.get_entries(NS, keys[:27])
    assert [entries[key].value for key in keys[:27]] == [_big(i) for i in range(27)]
    cloudflare.requests_seen()
    assert kv.delete_many(NS, [*keys[:29], "missing"]) == 29
    assert cloudflare.requests_seen() <= 3  # no value read: a listing, then one bulk delete
    assert kv.delete(NS, keys[29]) is True
    assert kv.delete(NS, keys[29]) is False
    assert kv.list(NS, "big").keys == []


def test_a_bulk_read_past_the_cap_is_split_whatever_the_status_it_comes_with() -> None:
    """Cloudflare's message, with a 413 or (as Miniflare's explorer sends it) a 500."""
    sent: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys = json.loads(request.content)["keys"]
        sent.append(keys)
        if len(keys) > 1:
            message = "KV GET_BULK failed: 413 Total size of request exceeds the limit of 25MB"
            body = {"success": False, "errors": [{"code": 10000, "message": message}]}
            return httpx.Response(500, json=body)
        values = {key: f"value of {key}" for key in keys}
        return httpx.Response(
            200, json={"success": True, "errors": [], "result": {"values": values}}
        )

    kv = CloudflareKVStore(
        "acct",
        "token",
        {NS: "ns1"},
        base_url="https://cloudflare.test/client/v4",
        transport=httpx.MockTransport(handler),
        sleep=lambda _: None,
    )
    assert kv.get_many(NS, ["a", "b", "c"]) == {k: f"value of {k}".encode() for k in "abc"}
    assert sent == [["a", "b", "c"], ["a"], ["b", "c"], ["b"], ["c"]]


def test_deleting_reads_no_value() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(f"{request.method} {request.url.path.rsplit('/ns1/', 1)[1]}")
        if request.url.path.endswith("/keys"):
            result: Any = [{"name": "page:a"}, {"name": "page:c"}]
            return httpx.Response(
                200,
                json={"success": True, "result": result, "result_info": {"cursor": ""}},
            )
        return httpx.Response(200, json={"success": True, "errors": [], "result": {}})

    kv = CloudflareKVStore(
        "acct",
        "token",
        {NS: "ns1"},
        base_url="https://cloudflare.test/client/v4",
        transport=httpx.MockTransport(handler),
        sleep=lambda _: None,
    )
    assert kv.delete_many(NS, ["page:a", "page:b", "page:c"]) == 2
    assert kv.delete(NS, "page:a") is True
    assert paths == [
        "GET keys",
        "POST bulk/delete",
        "GET metadata/page:a",
        "POST bulk/delete",
    ]
