"""A bounded load generator for the API: a fixed number of client threads on loopback, each
sending one request at a time until a deadline or a request budget, recording every status,
latency and acknowledged create. ``run_requests`` drives one fixed endpoint the same way."""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

Sent = tuple[httpx.Response, str | None]  # a response, and the path of a page it created

# What a client does, with its weight: create a page, read one it created, list a page of 20.
DEFAULT_MIX = {"create": 4, "detail": 4, "list": 2}


@dataclass
class LoadReport:
    """What one load run saw."""

    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # transport errors, by type
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    acknowledged: dict[str, str] = field(default_factory=dict)  # page_id -> source_path

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)

    def per_operation(self) -> dict[str, dict[str, float]]:
        """Requests/s and p50/p99 latency (ms) for each operation."""
        figures = {}
        for operation, samples in sorted(self.latencies.items()):
            ordered = sorted(samples)
            figures[operation] = {
                "requests": len(ordered),
                "per_second": round(len(ordered) / self.seconds, 1) if self.seconds else 0.0,
                "p50_ms": round(statistics.median(ordered) * 1000, 2),
                "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
            }
        return figures

    def to_json(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 2),
            "requests": self.requests,
            "per_second": round(self.requests / self.seconds, 1) if self.seconds else 0.0,
            "statuses": {str(status): count for status, count in sorted(self.statuses.items())},
            "transport_errors": dict(self.errors),
            "server_errors": self.server_errors,
            "acknowledged_creates": len(self.acknowledged),
            "operations": self.per_operation(),
        }


class _Client:
    """One simulated client: its own connection, its own pages."""

    def __init__(self, number: int, base_url: str, api_key: str, project_id: str) -> None:
        self.number = number
        self.http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=60,
        )
        self.pages_url = f"/api/projects/{project_id}/pages/"
        self.created: list[str] = []
        self.sequence = 0

    def create(self) -> Sent:
        self.sequence += 1
        path = f"dist/load/client-{self.number}/page-{self.sequence}.html"
        body = {
            "source_path": path,
            "priority": random.randint(1, 10),
            "extraction": {"engine": "html", "head": {"title": f"Page {self.sequence}"}},
        }
        return self.http.post(self.pages_url, json=body), path

    def detail(self) -> Sent:
        return self.http.get(f"{self.pages_url}{random.choice(self.created)}/"), None

    def list(self) -> Sent:
        return self.http.get(self.pages_url, params={"limit": 20, "ordering": "-priority"}), None


class _Budget:
    """Requests left to send, shared by the client threads (``None``: no limit)."""

    def __init__(self, total: int | None) -> None:
        self.left = total
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            if self.left is None:
                return True
            if self.left <= 0:
                return False
            self.left -= 1
            return True


def _send(
    report: LoadReport, lock: threading.Lock, name: str, request: Callable[[], Sent]
) -> Sent | None:
    """Send one request and record its status and latency under ``name`` (or its transport
    error, returning ``None``)."""
    began = time.perf_counter()
    try:
        sent = request()
    except httpx.TransportError as exc:
        with lock:
            report.errors[type(exc).__name__] += 1
        return None
    elapsed = time.perf_counter() - began
    with lock:
        report.statuses[sent[0].status_code] += 1
        report.latencies[name].append(elapsed)
    return sent


def _run_threads(report: LoadReport, work: Callable[[Any], None], clients: list[Any]) -> None:
    """One thread per client until all are done; the wall time goes to ``report.seconds``."""
    threads = [threading.Thread(target=work, args=(client,)) for client in clients]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report.seconds = time.perf_counter() - started


def run_load(
    base_url: str,
    api_key: str,
    project_id: str,
    *,
    clients: int,
    seconds: float | None = None,
    requests: int | None = None,
    mix: dict[str, int] | None = None,
) -> LoadReport:
    """Drive the API with ``clients`` concurrent clients for ``seconds`` or until ``requests``
    have been sent in all, whichever comes first."""
    if seconds is None and requests is None:
        raise ValueError("give a duration (seconds) or a request budget (requests)")
    weights = mix or DEFAULT_MIX
    operations, operation_weights = list(weights), list(weights.values())
    report = LoadReport()
    lock = threading.Lock()
    budget = _Budget(requests)
    deadline = time.perf_counter() + seconds if seconds is not None else float("inf")

    def work(client: _Client) -> None:
        actions: dict[str, Callable[[], Sent]] = {
            "create": client.create,
            "detail": client.detail,
            "list": client.list,
        }
        while time.perf_counter() < deadline and budget.take():
            operation = random.choices(operations, operation_weights)[0]
            if operation == "detail" and not client.created:
                operation = "create"
            sent = _send(report, lock, operation, actions[operation])
            if sent is not None and sent[1] is not None and sent[0].status_code == 201:
                page_id = sent[0].json()["page_id"]
                with lock:
                    report.acknowledged[page_id] = sent[1]
                client.created.append(page_id)

    pool = [_Client(number, base_url, api_key, project_id) for number in range(clients)]
    _run_threads(report, work, pool)
    for client in pool:
        client.http.close()
    return report


def run_requests(
    base_url: str,
    headers: Mapping[str, str],
    make_request: Callable[[httpx.Client], httpx.Response],
    *,
    clients: int,
    requests: int,
    name: str = "request",
) -> LoadReport:
    """Send ``requests`` requests in all from ``clients`` concurrent clients, one at a time per
    client, each on its own connection; ``make_request`` sends one. Latencies go under ``name``."""
    report = LoadReport()
    lock = threading.Lock()
    budget = _Budget(requests)

    def work(http: httpx.Client) -> None:
        while budget.take():
            _send(report, lock, name, lambda: (make_request(http), None))

    pool = [
        httpx.Client(base_url=base_url, headers=dict(headers), timeout=60) for _ in range(clients)
    ]
    _run_threads(report, work, pool)
    for http in pool:
        http.close()
    return report


def missing_creates(base_url: str, api_key: str, project_id: str, report: LoadReport) -> list[str]:
    """The acknowledged creates that cannot be read back (with the right content) afterwards."""
    missing = []
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}) as http:
        for page_id, path in report.acknowledged.items():
            response = http.get(f"/api/projects/{project_id}/pages/{page_id}/")
            if response.status_code != 200 or response.json().get("source_path") != path:
                missing.append(page_id)
    return missing
