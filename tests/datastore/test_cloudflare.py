"""Cloudflare-specific behaviour: limits, error mapping, retries, and interop with a Worker.

Retry and error paths are unit-tested with ``httpx.MockTransport``; everything else runs
against the local Cloudflare API (real KV and D1 on Miniflare's workerd).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from datastore import (
    AccessDenied,
    CacheClient,
    Datastore,
    IntegrityError,
    InvalidKey,
    InvalidValue,
    NotFound,
    NotSupported,
    PutItem,
    QueryError,
    RateLimited,
    RateLimiterClient,
    TooLarge,
    Unavailable,
)
from datastore.backends._cloudflare_budget import RequestBudget
from datastore.backends.cloudflare import CloudflareD1Database, CloudflareKVStore, is_idempotent
from tests.cloudflare.local_api import API_TOKEN, TEST_BUDGET, LocalCloudflare
from tests.datastore.test_cloudflare_budget import FakeClock

NS = "TESTNS"


@pytest.fixture
def cloudflare(cloudflare_api: LocalCloudflare) -> LocalCloudflare:
    cloudflare_api.reset()
    cloudflare_api.requests_seen()
    return cloudflare_api


@pytest.fixture
def kv(cloudflare: LocalCloudflare) -> CloudflareKVStore:
    return CloudflareKVStore(**cloudflare.kv_options(sleep=lambda _: None))


@pytest.fixture
def d1(cloudflare: LocalCloudflare) -> CloudflareD1Database:
    return CloudflareD1Database(**cloudflare.d1_options(sleep=lambda _: None))


# -- limits, enforced before sending ---------------------------------------------------------


def test_limits_are_enforced_before_any_request(
    kv: CloudflareKVStore, d1: CloudflareD1Database, cloudflare: LocalCloudflare
) -> None:
    bad_calls: list[tuple[type[Exception], Callable[[], object]]] = [
        (TooLarge, lambda: kv.put(NS, "k" * 513, b"v")),
        (TooLarge, lambda: kv.put(NS, "k", b"v" * (25 * 1024 * 1024 + 1))),
        (TooLarge, lambda: kv.put(NS, "k", b"v", metadata={"m": "x" * 1024})),
        (InvalidValue, lambda: kv.put(NS, "k", b"v", ttl=59)),
        (NotSupported, lambda: kv.put(NS, "k", b"v", if_version=0)),
        (TooLarge, lambda: kv.put_many(NS, [PutItem(f"k{i}", b"v") for i in range(10_001)])),
        (TooLarge, lambda: kv.delete_many(NS, [f"k{i}" for i in range(10_001)])),
        (InvalidValue, lambda: kv.list(NS, limit=9)),
        (InvalidKey, lambda: kv.get("NOT_CONFIGURED", "k")),
        (QueryError, lambda: d1.execute("SELECT " + ",".join("?" * 101), list(range(101)))),
        (TooLarge, lambda: d1.execute("SELECT '" + "x" * 100_000 + "'")),
        (InvalidValue, lambda: d1.execute("SELECT ?", [b"blob"])),
        (QueryError, lambda: d1.execute("SELECT 1; DROP TABLE objects")),
    ]
    for error, call in bad_calls:
        with pytest.raises(error):
            call()
    assert cloudflare.requests_seen() == 0


def test_a_hundred_parameters_are_fine(d1: CloudflareD1Database) -> None:
    row = d1.execute("SELECT " + ", ".join(f"?{i + 1} AS c{i}" for i in range(100)), range(100))
    assert row[0]["c99"] == 99


def test_bulk_get_is_chunked_by_100(kv: CloudflareKVStore) -> None:
    keys = [f"k{i:03d}" for i in range(250)]
    kv.put_many(NS, [PutItem(key, f"value-{key}") for key in keys])
    with kv.round_trips.track() as delta:
        values = kv.get_many(NS, [*keys, "missing"])
    assert delta.count == 3
    assert values == {key: f"value-{key}".encode() for key in keys}


def test_binary_values_survive_put_and_put_many(kv: CloudflareKVStore) -> None:
    blob = bytes(range(256))
    kv.put(NS, "one", blob)
    kv.put_many(NS, [PutItem("many", blob, metadata={"kind": "blob"}, ttl=120)])
    assert kv.get(NS, "one") == blob
    entry = kv.get_entry(NS, "many")
    assert entry is not None
    assert (entry.value, entry.metadata) == (blob, {"kind": "blob"})
    assert entry.expires_at is not None


def test_list_cursor_belongs_to_its_prefix(kv: CloudflareKVStore) -> None:
    kv.put_many(NS, [PutItem(f"a{i:02d}", b"v") for i in range(15)])
    page = kv.list(NS, "a", limit=10)
    assert page.cursor is not None and len(page.keys) == 10
    with pytest.raises(InvalidValue, match="another prefix"):
        kv.list(NS, "b", cursor=page.cursor, limit=10)
    assert kv.list(NS, "a", cursor=page.cursor, limit=10).keys == [
        f"a{i:02d}" for i in range(10, 15)
    ]


def test_d1_errors_are_mapped(d1: CloudflareD1Database) -> None:
    d1.execute("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    d1.execute("INSERT INTO t VALUES (?, ?)", ["a", 1])
    with pytest.raises(IntegrityError, match="UNIQUE constraint failed"):
        d1.execute("INSERT INTO t VALUES (?, ?)", ["a", 2])
    with pytest.raises(QueryError, match="no such table"):
        d1.execute("SELECT * FROM missing")
    with pytest.raises(QueryError, match="transaction"):
        d1.execute("BEGIN TRANSACTION")
    assert d1.execute("SELECT n FROM t") == [{"n": 1}]


def test_d1_batch_is_atomic(d1: CloudflareD1Database) -> None:
    d1.execute("CREATE TABLE t (id TEXT PRIMARY KEY)")
    with pytest.raises(IntegrityError):
        d1.batch([("INSERT INTO t VALUES (?)", ["x"]), ("INSERT INTO t VALUES (?)", ["x"])])
    assert d1.execute("SELECT count(*) AS n FROM t") == [{"n": 0}]


def test_bad_credentials(cloudflare: LocalCloudflare) -> None:
    kv = CloudflareKVStore(**cloudflare.kv_options(api_token="wrong"))
    with pytest.raises(AccessDenied, match="Authentication error"):
        kv.get(NS, "k")
    status = kv.status()
    assert status.healthy is False and "Authentication error" in status.detail
    d1 = CloudflareD1Database(**cloudflare.d1_options(database_id="no-such-db"))
    with pytest.raises(NotFound, match="database not found"):
        d1.execute("SELECT 1")


def test_status_names_missing_namespaces(cloudflare: LocalCloudflare) -> None:
    kv = CloudflareKVStore(**cloudflare.kv_options(namespaces={"PAGES": "not-in-account"}))
    status = kv.status()
    assert status.healthy is False
    assert "PAGES" in status.detail


# -- retries against the real runtime ----------------------------------------------------------


def test_429_is_retried_after_retry_after(cloudflare: LocalCloudflare) -> None:
    clock = FakeClock()
    budget = RequestBudget(API_TOKEN, limit=TEST_BUDGET, clock=clock, sleep=clock.sleep)
    kv = CloudflareKVStore(**cloudflare.kv_options(sleep=clock.sleep, budget=budget))
    cloudflare.inject_faults([{"status": 429, "retry_after": 2}, {"status": 429}])
    kv.put(NS, "k", b"v")
    assert clock.slept[0] == 2  # the budget held every request for the Retry-After
    assert cloudflare.requests_seen() == 3
    assert kv.get(NS, "k") == b"v"


def test_a_failed_non_idempotent_write_is_not_repeated(
    d1: CloudflareD1Database, cloudflare: LocalCloudflare
) -> None:
    d1.execute("CREATE TABLE counter (n INTEGER)")
    d1.execute("INSERT INTO counter VALUES (0)")
    cloudflare.requests_seen()
    # the update is applied, then the response is lost as a 500
    cloudflare.inject_faults([{"status": 500, "after": True}])
    with pytest.raises(Unavailable, match="not idempotent"):
        d1.execute("UPDATE counter SET n = n + 1")
    assert cloudflare.requests_seen() == 1
    assert d1.execute("SELECT n FROM counter") == [{"n": 1}]


def test_idempotent_statements_are_retried_on_5xx(
    d1: CloudflareD1Database, cloudflare: LocalCloudflare
) -> None:
    cloudflare.inject_faults([{"status": 503}, {"status": 500, "after": True}])
    d1.execute("CREATE TABLE IF NOT EXISTS t (a)")
    assert cloudflare.requests_seen() == 3
    assert d1.table_info("t")[0].name == "a"


def test_retries_are_bounded(kv: CloudflareKVStore, cloudflare: LocalCloudflare) -> None:
    cloudflare.inject_faults([{"status": 503}] * 10)
    with pytest.raises(Unavailable, match="gave up after 4 attempts"):
        kv.get(NS, "k")
    assert cloudflare.requests_seen() == 4


def test_which_statements_count_as_idempotent() -> None:
    assert is_idempotent("SELECT * FROM t")
    assert is_idempotent("  explain query plan SELECT 1")
    assert is_idempotent("PRAGMA table_info(t)")
    assert is_idempotent("CREATE TABLE IF NOT EXISTS t (a)")
    assert is_idempotent("CREATE UNIQUE INDEX IF NOT EXISTS i ON t (a)")
    assert is_idempotent("DROP INDEX IF EXISTS i")
    assert not is_idempotent("CREATE TABLE t (a)")
    assert not is_idempotent("INSERT INTO t VALUES (1)")
    assert not is_idempotent("UPDATE t SET a = a + 1")
    assert not is_idempotent("PRAGMA foreign_keys = OFF")
    assert not is_idempotent("WITH x AS (SELECT 1) DELETE FROM t")


# -- retry and error paths, with a mock transport ---------------------------------------------


def mock_kv(
    handler: Callable[[httpx.Request], httpx.Response],
    slept: list[float],
    *,
    budget: RequestBudget | None = None,
) -> CloudflareKVStore:
    return CloudflareKVStore(
        "acct",
        "token",
        {NS: "ns1"},
        base_url="https://cloudflare.test/client/v4",
        transport=httpx.MockTransport(handler),
        sleep=slept.append,
        budget=budget or RequestBudget("token"),  # its own: a hold stays in this test
    )


def mock_d1(handler: Callable[[httpx.Request], httpx.Response]) -> CloudflareD1Database:
    return CloudflareD1Database(
        "acct",
        "token",
        "db",
        base_url="https://cloudflare.test/client/v4",
        transport=httpx.MockTransport(handler),
        sleep=lambda _: None,
        budget=RequestBudget("token"),
    )


def envelope_error(status: int, code: int, message: str, **headers: str) -> httpx.Response:
    body = {"success": False, "errors": [{"code": code, "message": message}], "result": None}
    return httpx.Response(status, json=body, headers=headers)


def test_connection_errors_are_retried_then_reported() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("connection refused", request=request)

    slept: list[float] = []
    kv = mock_kv(handler, slept)
    with pytest.raises(Unavailable, match="cannot connect"):
        kv.put(NS, "k", b"v")
    assert len(calls) == 4 and len(slept) == 3
    assert all(0 <= delay <= 8 for delay in slept)
    assert kv.round_trips.value == 4


def test_read_timeouts_retry_only_idempotent_requests() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) == 1:
            raise httpx.ReadTimeout("timed out", request=request)
        result = [{"results": {"columns": [], "rows": []}, "success": True, "meta": {}}]
        return httpx.Response(200, json={"success": True, "errors": [], "result": result})

    d1 = mock_d1(handler)
    with pytest.raises(Unavailable, match="may have been applied"):
        d1.execute("INSERT INTO t VALUES (1)")
    assert len(calls) == 1
    calls.clear()
    d1.execute("INSERT INTO t VALUES (1)", idempotent=True)
    assert len(calls) == 2


def test_retry_after_holds_the_budget_up_to_its_maximum_wait() -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        if len(sent) == 1:
            return envelope_error(429, 10429, "slow down", **{"Retry-After": "120"})
        return httpx.Response(200, content=b"value")

    clock = FakeClock()
    patient = RequestBudget("token", max_wait=300, clock=clock, sleep=clock.sleep)
    assert mock_kv(handler, [], budget=patient).get(NS, "k") == b"value"
    assert clock.slept == [120.0]  # Retry-After is honoured in full
    sent.clear()
    clock = FakeClock()
    hasty = RequestBudget("token", max_wait=60, clock=clock, sleep=clock.sleep)
    with pytest.raises(RateLimited, match="budget of 1200 requests per 300 s"):
        mock_kv(handler, [], budget=hasty).get(NS, "k")
    assert len(sent) == 1 and clock.slept == []  # nothing sent past the hold


def test_error_envelopes_are_mapped() -> None:
    cases = [
        (envelope_error(401, 10000, "Authentication error"), AccessDenied),
        (envelope_error(404, 10013, "namespace not found"), NotFound),
        (envelope_error(413, 10011, "Value too large"), TooLarge),
        (envelope_error(400, 10019, "Invalid key"), InvalidValue),
        (
            httpx.Response(
                200, json={"success": False, "errors": [{"code": 7500, "message": "x"}]}
            ),
            QueryError,
        ),
    ]
    for response, error in cases:

        def reply(request: httpx.Request, response: httpx.Response = response) -> httpx.Response:
            return response

        kv = mock_kv(reply, [])
        with pytest.raises(error):
            kv.get_metadata(NS, "k")
    limited = mock_kv(
        lambda request: envelope_error(429, 10429, "rate", **{"Retry-After": "1"}), []
    )
    with pytest.raises(RateLimited) as info:
        limited.exists(NS, "k")
    assert info.value.retry_after == 1


def test_bulk_write_retries_unsuccessful_keys() -> None:
    bodies: list[list[dict]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        failed = ["b"] if len(bodies) == 1 else []
        return httpx.Response(
            200,
            json={"success": True, "errors": [], "result": {"unsuccessful_keys": failed}},
        )

    kv = mock_kv(handler, [])
    kv.put_many(NS, [PutItem("a", b"1"), PutItem("b", b"2")])
    assert [item["key"] for item in bodies[0]] == ["a", "b"]
    assert [item["key"] for item in bodies[1]] == ["b"]
    assert bodies[0][0]["base64"] is True


def test_keys_are_percent_encoded() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path.decode())
        return httpx.Response(200, content=b"x")

    mock_kv(handler, []).get(NS, "page:proj_1/évent?x")
    assert paths == [
        "/client/v4/accounts/acct/storage/kv/namespaces/ns1/values/page%3Aproj_1%2F%C3%A9vent%3Fx"
    ]


# -- interop with a Worker written like the spec's KVAdapter ---------------------------------


def test_a_worker_reads_what_python_wrote(
    kv: CloudflareKVStore, cloudflare: LocalCloudflare
) -> None:
    ds = Datastore(kv)
    project = {"name": "My Project", "settings": {"tone": "premium"}, "count": 3}
    ds.auth("user_123").put("PROJECT", "proj_456", project)
    response = cloudflare.app("GET", "user_123", "PROJECT", "proj_456")
    assert response.json() == {"data": {**project, "_auth": ["user_123"]}}
    assert cloudflare.app("GET", "user_999", "PROJECT", "proj_456").json() == {"data": None}
    ds.auth("user_123").put("PAGE", ds.composite_key("proj_456", "page_1"), {"title": "Hi"})
    page = cloudflare.app("GET", "user_123", "PAGE", "proj_456:page_1").json()
    assert page == {"data": {"title": "Hi", "_auth": ["user_123"]}}


def test_python_reads_what_a_worker_wrote(
    kv: CloudflareKVStore, cloudflare: LocalCloudflare
) -> None:
    body = {"email": "john@example.com", "created": "2024-09-02T13:45:00.000Z"}
    assert cloudflare.app("PUT", "user_12345", "USER", "user_12345", body).status_code == 200
    ds = Datastore(kv)
    assert ds.auth("user_12345").get("USER", "user_12345") == {**body, "_auth": ["user_12345"]}
    assert ds.auth("someone_else").get("USER", "user_12345") is None
    assert kv.get("NIMBUS_USERS", "user:user_12345") is not None


def test_a_worker_reads_rate_limit_counters_under_the_spec_keys(
    kv: CloudflareKVStore, cloudflare: LocalCloudflare
) -> None:
    limiter = RateLimiterClient(kv)
    for _ in range(2):
        limiter.check_limit("::1", 5, 900, key_prefix="rl:login:")
    limiter.check_limit("192.168.1.1", 5, 900, key_prefix="rl:login:")
    read = cloudflare.kv_clients("GET", "ratelimit", "rl:login:", "::1").json()
    assert read == {"key": "rl:login:::1", "count": 2}
    read = cloudflare.kv_clients("GET", "ratelimit", "rl:login:", "192.168.1.1").json()
    assert read == {"key": "rl:login:192.168.1.1", "count": 1}


def test_a_worker_reads_cache_entries_python_wrote(
    kv: CloudflareKVStore, cloudflare: LocalCloudflare
) -> None:
    CacheClient(kv, "platform-settings", default_ttl=86_400).set("all", {"theme": "dark"})
    read = cloudflare.kv_clients("GET", "cache", "cache:platform-settings:all").json()
    assert read["data"] == {"theme": "dark"}
    assert set(read["entry"]) == {"data", "created", "expires", "type"}
    assert read["entry"]["type"] == "platform-settings"


def test_python_reads_cache_entries_a_worker_wrote(
    kv: CloudflareKVStore, cloudflare: LocalCloudflare
) -> None:
    key = "cache:content:published:cat-uuid"
    written = cloudflare.kv_clients("PUT", "cache", key, body=[{"id": 1}], ttl=300)
    assert written.status_code == 200
    assert CacheClient(kv, "content").get("published:cat-uuid") == [{"id": 1}]


def test_a_404_that_is_not_cloudflares_key_not_found_is_an_error_not_a_missing_key() -> None:
    """Only Cloudflare's own "key not found" (10009 in its envelope) means missing; a wrong
    route or base URL, a missing namespace or a proxy's page is an error naming what was
    reached, on reads as on writes."""
    for page in (
        httpx.Response(404, text="<html>Not Found</html>"),
        httpx.Response(404, json={"detail": "Not Found"}),
        envelope_error(404, 10013, "namespace not found"),
        envelope_error(404, 7003, "Could not route to /accounts/acct/storage/kv"),
    ):

        def reply(request: httpx.Request, page: httpx.Response = page) -> httpx.Response:
            return page

        kv = mock_kv(reply, [])
        for method, args in (("get", ()), ("exists", ()), ("get_metadata", ()), ("put", (b"v",))):
            with pytest.raises(NotFound) as info:
                getattr(kv, method)(NS, "k", *args)
            if page.headers.get("content-type", "").startswith("text/"):
                assert "not a Cloudflare API answer" in str(info.value)
                assert "https://cloudflare.test/" in str(info.value)
    missing = mock_kv(lambda request: envelope_error(404, 10009, "get: 'key not found'"), [])
    assert missing.get(NS, "k") is None and missing.exists(NS, "k") is False
    assert missing.get_metadata(NS, "k") is None


def test_a_d1_sql_error_sent_with_a_5xx_is_a_query_error_and_not_retried() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if "UNIQUE" in request.content.decode():
            message = "D1_ERROR: UNIQUE constraint failed: t.id: SQLITE_CONSTRAINT"
        else:
            message = "D1_ERROR: no such table: nope: SQLITE_ERROR"
        return envelope_error(500, 7500, message)

    d1 = mock_d1(handler)
    with pytest.raises(QueryError, match="no such table"):
        d1.execute("SELECT * FROM nope", idempotent=True)
    assert len(calls) == 1  # not temporary: not retried
    with pytest.raises(IntegrityError):
        d1.execute("INSERT INTO t VALUES (1) -- UNIQUE", idempotent=True)
    assert len(calls) == 2
