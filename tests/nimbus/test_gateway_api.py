"""The API on Cloudflare through the gateway Worker (worker/gateway.js in Miniflare, on real KV
and D1 bindings): what each endpoint costs in gateway requests, counted by the client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from datamodel import initialize
from nimbus import conf
from nimbus.models import DOMAIN_MODELS
from tests.cloudflare.local_api import LocalCloudflare
from tests.nimbus.api_support import ApiUser, api_user, make_project


@pytest.fixture
def gateway(settings, cloudflare_api: LocalCloudflare) -> Iterator[None]:
    cloudflare_api.reset()
    settings.NIMBUS = cloudflare_api.nimbus_settings("gateway")
    initialize(conf.get_connection(), DOMAIN_MODELS, seeds=False)
    yield


def requests() -> Callable[[], int]:
    """Gateway requests made from now on (every request the client sends)."""
    counter = conf.kv_store().client.requests  # type: ignore[attr-defined]
    start = counter.value
    return lambda: counter.value - start


def cost(call: Callable[[], Any]) -> int:
    measure = requests()
    response = call()
    assert response.status_code < 300, response.content
    return measure()


def upload(user: ApiUser, project: str, count: int) -> Any:
    pages = [{"source_path": f"p/{i}.html", "priority": i % 10 + 1} for i in range(count)]
    return user.client.post(f"/api/projects/{project}/batches/", {"pages": pages}, format="json")


@pytest.mark.usefixtures("gateway")
def test_reads_cost_at_most_two_gateway_requests() -> None:
    alice = api_user("alice")
    project = make_project(alice)
    assert upload(alice, project, 25).status_code == 201
    base = f"/api/projects/{project}"
    # authentication (the key, its owner, the request counted against its limit) is one
    # request; the read is the second
    assert cost(lambda: alice.client.get("/api/me/")) <= 2
    assert cost(lambda: alice.client.get(f"{base}/")) == 2
    assert cost(lambda: alice.client.get(f"{base}/pages/?limit=20")) == 2
    listed = alice.client.get(f"{base}/pages/?limit=20&expand=objects").json()
    assert len(listed["data"]) == 20 and all("source_path" in page for page in listed["data"])
    assert cost(lambda: alice.client.get(f"{base}/pages/?limit=20&expand=objects")) == 2


@pytest.mark.usefixtures("gateway")
def test_the_rate_limit_is_exact_through_the_gateway() -> None:
    alice = api_user("alice", rate_limit=3)
    statuses = [alice.client.get("/api/me/").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]


@pytest.mark.usefixtures("gateway")
def test_write_endpoints_stay_within_what_they_cost_today() -> None:
    """The write workflows still make a request per object they touch (they are to become
    one request each, with the listings, lifecycle objects and counters gathered): these
    ceilings are today's costs, so a regression shows. Creating a project is its save with
    its row (1) and the owner's ``projects:`` listing (one list edit); uploading a page
    touches its batch, the page, its status, the queue, its log and the project's usage."""
    alice = api_user("alice")
    measure = requests()
    project = make_project(alice)
    created = measure()
    base = f"/api/projects/{project}"
    one = cost(
        lambda: alice.client.post(f"{base}/pages/", {"source_path": "a.html"}, format="json")
    )
    batch = cost(lambda: upload(alice, project, 100))
    claim = cost(lambda: alice.client.post(f"{base}/queue/claim/"))
    claimed = alice.client.post(f"{base}/queue/claim/").json()["page_id"]
    ack = cost(lambda: alice.client.post(f"{base}/queue/{claimed}/ack/", {}, format="json"))
    assert created <= 3 and one <= 19 and batch <= 22 and claim <= 13 and ack <= 12, (
        created,
        one,
        batch,
        claim,
        ack,
    )
