"""Faults on the way to the gateway Worker (worker/gateway.js in Miniflare) and inside it: a
save is one request carrying the KV write and its metadata rows, so what a failure leaves
behind must still be what ``nimbus_sync`` repairs, and nothing is applied twice.

Transport faults (a refusal before the request reaches the Worker, an answer lost after it
ran) come from a transport that forwards to the real Worker; D1 failures are real (the
metadata table renamed away while a save runs)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from datamodel import Connection, SyncError, create_tables, verify
from datastore import Datastore, Unavailable
from datastore.backends._gateway_http import GatewayClient
from datastore.backends.gateway import GatewayD1Database, GatewayKVStore
from tests.cloudflare.local_api import GATEWAY_SECRET, NAMESPACE_IDS, LocalCloudflare
from tests.datamodel.conftest import routing
from tests.datamodel.models import TEST_MODELS, Page


class FaultyTransport(httpx.BaseTransport):
    """Forwards to the gateway; each queued fault changes one request: ``{"status": 503}``
    answers without forwarding, ``{"drop": True}`` forwards and then loses the answer."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.faults: list[dict[str, Any]] = []
        self.forwarded = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        fault = self.faults.pop(0) if self.faults else {}
        if "status" in fault:
            body = {"error": {"type": "unavailable", "message": "injected"}}
            headers = {"retry-after": "0"} if fault["status"] == 429 else {}
            return httpx.Response(fault["status"], json=body, headers=headers)
        self.forwarded += 1
        response = self.inner.handle_request(request)
        if fault.get("drop"):
            response.read()
            raise httpx.ReadError("connection dropped after the request ran", request=request)
        return response


@pytest.fixture
def transport() -> FaultyTransport:
    return FaultyTransport()


@pytest.fixture
def gateway(cloudflare_api: LocalCloudflare, transport: FaultyTransport) -> Iterator[Connection]:
    cloudflare_api.reset()
    client = GatewayClient(
        cloudflare_api.url, GATEWAY_SECRET, transport=transport, sleep=lambda _: None
    )
    kv = GatewayKVStore(namespaces=list(NAMESPACE_IDS), client=client)
    sql = GatewayD1Database(client=client)
    connection = Connection(Datastore(kv, routing=routing()), sql)
    create_tables(sql, TEST_MODELS)
    transport.forwarded = 0
    yield connection
    client.close()


def pages(connection: Connection):
    return Page.objects.auth("alice", using=connection)


def test_a_metadata_failure_in_the_combined_save_is_a_clear_error_and_repairable(
    gateway: Connection, transport: FaultyTransport
) -> None:
    # a real D1 failure: the metadata table is away while the save runs
    gateway.sql.execute('ALTER TABLE "webpage_meta" RENAME TO "webpage_meta_away"')
    transport.forwarded = 0
    with pytest.raises(SyncError, match="nimbus_sync --repair"):
        pages(gateway).create(project_id="p", page_id="b", url="https://e.com")
    assert transport.forwarded == 1  # one request; a D1 error is not retried
    assert pages(gateway).get(project_id="p", page_id="b").get("url") == "https://e.com"
    gateway.sql.execute('ALTER TABLE "webpage_meta_away" RENAME TO "webpage_meta"')
    assert verify(gateway, Page).missing == 1
    assert verify(gateway, Page, repair=True).repaired == 1
    assert verify(gateway, Page).drift == 0


def test_a_gateway_outage_writes_nothing(gateway: Connection, transport: FaultyTransport) -> None:
    transport.faults = [{"status": 503}] * 4
    with pytest.raises(Unavailable, match="gave up after 4 attempts"):
        pages(gateway).create(project_id="p", page_id="c", url="https://e.com")
    assert transport.forwarded == 0
    assert pages(gateway).get_or_none(project_id="p", page_id="c") is None
    assert gateway.sql.execute("SELECT count(*) AS n FROM webpage_meta")[0]["n"] == 0


def test_refusals_and_lost_answers_of_a_save_are_retried_and_land_once(
    gateway: Connection, transport: FaultyTransport
) -> None:
    # throttled before reaching the Worker, then the answer lost after it ran: the save (a
    # put and a version-guarded upsert) may run again, under a new signature
    transport.faults = [{"status": 429}, {"drop": True}]
    page = pages(gateway).create(project_id="p", page_id="d", url="https://e.com")
    assert transport.forwarded == 2
    assert pages(gateway).get(page.kv_id).get("url") == "https://e.com"
    assert verify(gateway, Page).drift == 0
    assert gateway.sql.execute("SELECT count(*) AS n FROM webpage_meta")[0]["n"] == 1


def test_a_lost_answer_of_an_increment_is_not_sent_again(
    gateway: Connection, transport: FaultyTransport
) -> None:
    kv = gateway.datastore.kv
    assert kv is not None
    transport.faults = [{"drop": True}]
    with pytest.raises(Unavailable, match="not idempotent, so not retried"):
        kv.incr("COUNTERS", "n")
    assert kv.get("COUNTERS", "n") == b"1"  # it ran once, and only once
