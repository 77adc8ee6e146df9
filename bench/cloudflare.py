"""``python -m bench cloudflare``: the Cloudflare REST API beside the gateway Worker.

The same model operations and API endpoints run over the REST backends
(``CloudflareKVStore``/``CloudflareD1Database``) and over the gateway
(``GatewayKVStore``/``GatewayD1Database``), both on the local Cloudflare of the tests (the REST
API and the gateway Worker in Miniflare, on the same KV namespaces and D1 database). Every
request goes through ``bench.latency_proxy``, which adds ``--delay-ms`` each way (an edge-to-API
round trip) and counts the Cloudflare requests of each operation. The API runs in-process
(Django's test client, an API key with its rate limit counted as in production).

Per operation and path: Cloudflare requests, latency p50/p99 with the delay, and the sustained
rate the path allows within Cloudflare's REST API limit of 1,200 requests per 5 minutes per
token. The gateway is not under that limit (its traffic does not use the REST API); its bounds
are Workers' (``GATEWAY_BOUNDS``), so its column is what the same budget would allow, for the
ratio.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from .common import machine, print_table, setup_django
from .latency_proxy import PATH_CLASSES, LatencyProxy

HELP = "Cloudflare requests, latency and sustainable rate: REST API beside the gateway Worker"
PATHS = ["rest", "gateway"]
REST_BUDGET = 1200  # requests per token ...
REST_PERIOD = 300.0  # ... per 5 minutes
REST_RATE = REST_BUDGET / REST_PERIOD
# What bounds the gateway instead of the REST API's budget.
GATEWAY_BOUNDS = (
    "the gateway's requests do not count against the REST API's 1,200 per 5 minutes; Workers' "
    "limits bound it: Free 100,000 Worker requests a day, Paid no request cap (billed per "
    "request); per request 1,000 KV operations and 50 (Free) or 1,000 (Paid) D1 queries, "
    "one of them the replay check; KV takes 1 write per second per key; a D1 database runs "
    "its queries one at a time"
)
MODEL_OPERATIONS = {
    "save": "create a Page (save)",
    "get": "get a Page",
    "page": "page of 20 + total",
    "page_with_objects": "page of 20 with objects",
    "bulk_create": "bulk create {bulk}",
}
API_ENDPOINTS = {
    "me": "GET /api/me/",
    "project_get": "GET a project",
    "project_post": "POST a project",
    "page_post": "POST one page",
    "batch": "POST a batch of {bulk} pages",
    "page_list": "GET a page list of 20",
    "page_list_objects": "GET a page list of 20 ?expand=objects",
    "claim_ack": "claim + ack one page",
    "usage_flush": "key usage flush (1 key; at most every 10 s)",
}
RATE_LIMIT = 100_000_000  # the key's requests per minute: counted, never reached


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--delay-ms", type=float, default=40.0, help="added each way (ms)")
    parser.add_argument("--samples", type=int, default=20, help="timed calls per operation")
    parser.add_argument("--bulk", type=int, default=100, help="pages per bulk create and batch")
    parser.add_argument("--bulk-samples", type=int, default=5, help="timed bulk creates/batches")
    parser.add_argument("--repeat", type=int, default=1, help="rounds (samples are pooled)")
    parser.add_argument("--path", action="append", choices=PATHS, help="repeatable (default both)")


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile (p99 of 20 samples is the largest)."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


class Recorder:
    """Times calls and counts the Cloudflare requests each made, through the proxy."""

    def __init__(self, proxy: LatencyProxy) -> None:
        self.proxy = proxy
        self.seconds: dict[str, list[float]] = {}
        self.requests: dict[str, list[dict[str, int]]] = {}

    def call(self, name: str, action: Callable[[], Any]) -> Any:
        before = self.proxy.counts()
        began = time.perf_counter()
        result = action()
        elapsed = time.perf_counter() - began
        after = self.proxy.counts()
        self.seconds.setdefault(name, []).append(elapsed)
        self.requests.setdefault(name, []).append(
            {kind: after[kind] - before[kind] for kind in PATH_CLASSES}
        )
        return result

    def figures(self, name: str) -> dict[str, Any]:
        per_call = [sum(counts.values()) for counts in self.requests[name]]
        by_class = {
            kind: statistics.median(counts[kind] for counts in self.requests[name])
            for kind in PATH_CLASSES
        }
        requests = statistics.median(per_call)
        return {
            "calls": len(per_call),
            "requests": requests,
            "requests_min": min(per_call),
            "requests_max": max(per_call),
            "requests_by_class": {kind: n for kind, n in by_class.items() if n},
            "p50_ms": round(percentile(self.seconds[name], 0.5) * 1000, 1),
            "p99_ms": round(percentile(self.seconds[name], 0.99) * 1000, 1),
            # what one token's REST budget (4 requests a second) allows at this cost
            "per_second_at_rest_budget": round(REST_RATE / requests, 3) if requests else None,
        }


def stores(path: str, proxy: LatencyProxy, local: Any) -> dict[str, Any]:
    """``settings.NIMBUS`` for ``path``, every request through the proxy."""
    if path == "rest":
        base_url = proxy.url + "client/v4"
        return {
            "KV": {
                "BACKEND": "datastore.backends.cloudflare.CloudflareKVStore",
                "OPTIONS": local.kv_options(base_url=base_url),
            },
            "D1": {
                "BACKEND": "datastore.backends.cloudflare.CloudflareD1Database",
                "OPTIONS": local.d1_options(base_url=base_url),
            },
        }
    options = local.gateway_options(url=proxy.url)
    return {
        "KV": {"BACKEND": "datastore.backends.gateway.GatewayKVStore", "OPTIONS": options},
        "D1": {
            "BACKEND": "datastore.backends.gateway.GatewayD1Database",
            "OPTIONS": {key: options[key] for key in ("url", "secret")},
        },
    }


@contextmanager
def configured(path: str, proxy: LatencyProxy, local: Any) -> Iterator[Any]:
    """The app on ``path``'s stores, on an emptied local Cloudflare with the domain tables;
    the connection."""
    from django.conf import settings

    from datamodel import initialize
    from nimbus import conf
    from nimbus.models import DOMAIN_MODELS

    local.reset()
    settings.NIMBUS = stores(path, proxy, local)
    # key usage is flushed by api_round, after its timed calls
    settings.NIMBUS_KEY_USAGE_FLUSH_SECONDS = 24 * 3600
    conf.reset()
    try:
        connection = conf.get_connection()
        initialize(connection, DOMAIN_MODELS, seeds=False)
        yield connection
    finally:
        conf.reset()


def model_round(
    recorder: Recorder, connection: Any, options: argparse.Namespace, base: int
) -> None:
    """One round of the model operations on ``nimbus.models.Page``."""
    from .subjects.nimbus import NimbusPages

    pages = NimbusPages(connection)
    numbers = range(base, base + options.samples)
    for number in numbers:
        recorder.call("save", partial(pages.create, number))
    for number in numbers:
        recorder.call("get", partial(pages.get, number))
    for batch in range(options.bulk_samples):  # also fills the lists below (a fifth queued)
        first = base + 1_000_000 + batch * options.bulk
        chunk = range(first, first + options.bulk)
        recorder.call("bulk_create", partial(pages.bulk_create, chunk))
    for _ in range(options.samples):
        recorder.call("page", pages.page)
    for _ in range(options.samples):
        recorder.call("page_with_objects", pages.page_with_data)


def _answer(response: Any, *statuses: int) -> Any:
    if response.status_code not in statuses:
        raise RuntimeError(f"{response.request['PATH_INFO']} answered {response.status_code}")
    return response.json() if response.content else None


def api_round(recorder: Recorder, options: argparse.Namespace, base: int) -> None:
    """One round of the API endpoints, on a fresh key, project and queue of pages."""
    from io import StringIO

    from django.core.management import call_command
    from rest_framework.test import APIClient

    from nimbus import key_usage

    out = StringIO()
    email = f"bench-{base}@example.com"
    call_command(
        "nimbus_create_key", email, "--create-user", f"--rate-limit={RATE_LIMIT}", stdout=out
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {out.getvalue().strip()}")

    def bodies(first: int) -> list[dict[str, Any]]:
        return [
            {
                "source_path": f"dist/bench/page-{number:06}.html",
                "priority": 1 + number * 7 % 10,
                "extraction": {"engine": "html", "head": {"title": f"Page {number}"}},
            }
            for number in range(first, first + options.bulk)
        ]

    project = _answer(client.post("/api/projects/", {"name": "bench.example"}, format="json"), 201)
    pages = f"/api/projects/{project['project_id']}/pages/"
    queue = f"/api/projects/{project['project_id']}/queue/"
    batches = f"/api/projects/{project['project_id']}/batches/"
    for first in range(0, max(options.samples, 20), options.bulk):  # a queue to list and claim
        _answer(client.post(batches, {"pages": bodies(first)}, format="json"), 201)
    calls: list[tuple[str, int, Callable[[int], Any]]] = [
        ("me", options.samples, lambda _: _answer(client.get("/api/me/"), 200)),
        (
            "project_get",
            options.samples,
            lambda _: _answer(client.get(f"/api/projects/{project['project_id']}/"), 200),
        ),
        (
            "project_post",
            options.samples,
            lambda n: _answer(
                client.post("/api/projects/", {"name": f"bench-{n}.example"}, format="json"), 201
            ),
        ),
        (
            "page_post",
            options.samples,
            lambda n: _answer(
                client.post(pages, {"source_path": f"single/page-{n}.html"}, format="json"), 201
            ),
        ),
        (
            "batch",
            options.bulk_samples,
            lambda n: _answer(
                client.post(
                    batches, {"pages": bodies(1_000_000 + n * options.bulk)}, format="json"
                ),
                201,
            ),
        ),
        (
            "page_list",
            options.samples,
            lambda _: _answer(client.get(pages, {"limit": 20, "ordering": "-priority"}), 200),
        ),
        (
            "page_list_objects",
            options.samples,
            lambda _: _answer(
                client.get(pages, {"limit": 20, "ordering": "-priority", "expand": "objects"}),
                200,
            ),
        ),
        ("claim_ack", options.samples, lambda _: claim_ack(client, queue)),
    ]
    for name, count, send in calls:
        for number in range(count):
            recorder.call(name, partial(send, base + number))
    # A key's usage is written once per flush interval per process, not per request (so
    # never during the calls above): its cost apart.
    recorder.call("usage_flush", key_usage.flush)


def claim_ack(client: Any, queue: str) -> None:
    """Claim the next queued page and acknowledge it: one worker's page."""
    claimed = _answer(client.post(queue + "claim/", {}, format="json"), 200)
    _answer(client.post(f"{queue}{claimed['page_id']}/ack/", {}, format="json"), 200)


def run_path(
    path: str, local: Any, options: argparse.Namespace
) -> dict[str, dict[str, dict[str, Any]]]:
    """Every round of model operations and endpoints on one path; the figures."""
    target = local.url
    with LatencyProxy(target, delay_ms=options.delay_ms) as proxy:
        models, api = Recorder(proxy), Recorder(proxy)
        for repetition in range(options.repeat):
            base = 10_000_000 * (repetition + 1)
            with configured(path, proxy, local) as connection:
                model_round(models, connection, options, base)
                api_round(api, options, base)
            print(f"  {path}: round {repetition + 1} of {options.repeat} done", flush=True)
    return {
        "operations": {name: models.figures(name) for name in MODEL_OPERATIONS},
        "endpoints": {name: api.figures(name) for name in API_ENDPOINTS},
    }


def run(options: argparse.Namespace) -> dict[str, Any]:
    if min(options.samples, options.bulk, options.bulk_samples, options.repeat) < 1:
        raise SystemExit("--samples, --bulk, --bulk-samples and --repeat must be at least 1")
    from tests.cloudflare.local_api import LocalCloudflare, unavailable_reason

    reason = unavailable_reason()
    if reason:
        raise SystemExit(f"the local Cloudflare cannot start: {reason}")
    paths = options.path or PATHS
    with tempfile.TemporaryDirectory(prefix="nimbus-bench-cf-") as scratch:
        os.environ["DJANGO_ALLOWED_HOSTS"] = "testserver"  # Django's test client
        os.environ["DJANGO_SECURE_SSL_REDIRECT"] = "false"
        setup_django(Path(scratch))
        local = LocalCloudflare()
        try:
            results = {}
            for path in paths:
                print(f"{path}: {options.repeat} round(s), +{options.delay_ms:g} ms each way")
                results[path] = run_path(path, local, options)
        finally:
            local.stop()
    payload = {
        "machine": machine(),
        "delay_ms_each_way": options.delay_ms,
        "samples": options.samples,
        "bulk": options.bulk,
        "bulk_samples": options.bulk_samples,
        "repeat": options.repeat,
        "rest_budget": {"requests": REST_BUDGET, "seconds": REST_PERIOD},
        "gateway_bounds": GATEWAY_BOUNDS,
        "results": results,
        "ratios": ratios(results),
    }
    print_report(payload)
    return payload


def ratios(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """REST over gateway, per operation: requests per operation (so the sustainable rate at
    one request budget) and p50."""
    if not {"rest", "gateway"} <= set(results):
        return {}
    ratio: dict[str, dict[str, Any]] = {}
    for group in ("operations", "endpoints"):
        for name, rest in results["rest"][group].items():
            gateway = results["gateway"][group][name]
            ratio[name] = {
                "requests": round(rest["requests"] / gateway["requests"], 2)
                if gateway["requests"]
                else None,
                "p50": round(rest["p50_ms"] / gateway["p50_ms"], 2) if gateway["p50_ms"] else None,
            }
    return ratio


def _rate(figures: dict[str, Any]) -> str:
    rate = figures["per_second_at_rest_budget"]
    return "-" if rate is None else f"{rate:.3g}/s"


def _requests(figures: dict[str, Any]) -> str:
    low, high = figures["requests_min"], figures["requests_max"]
    median = f"{figures['requests']:g}"
    return median if low == high else f"{median} ({low}-{high})"


def print_report(payload: dict[str, Any]) -> None:
    results, ratio = payload["results"], payload["ratios"]
    print(
        f"\n+{payload['delay_ms_each_way']:g} ms each way; {payload['samples']} calls per "
        f"operation ({payload['bulk_samples']} of the bulk ones) x {payload['repeat']} round(s). "
        f"requests: Cloudflare requests per call (median, range); rate: what 1,200 requests "
        f"per 5 minutes allow"
    )
    for group, labels in (("operations", MODEL_OPERATIONS), ("endpoints", API_ENDPOINTS)):
        headers = ["operation" if group == "operations" else "endpoint"]
        for path in results:
            headers += [f"{path} requests", f"{path} p50 ms", f"{path} p99 ms", f"{path} rate"]
        if ratio:
            headers += ["rest/gw requests", "rest/gw p50"]
        rows = []
        for name, label in labels.items():
            row = [label.format(bulk=payload["bulk"])]
            for path in results:
                figures = results[path][group][name]
                row += [_requests(figures), figures["p50_ms"], figures["p99_ms"], _rate(figures)]
            if ratio:
                row += [f"{ratio[name]['requests']}x", f"{ratio[name]['p50']}x"]
            rows.append(row)
        print()
        print_table(headers, rows)
    if "gateway" in results:
        print(f"\ngateway rate: at the REST budget, for the ratio only; {GATEWAY_BOUNDS}.")
