"""The request budget per Cloudflare API token: with a fake clock on a mock transport, shared by
threads, and by real processes through a SQLite file."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from datastore import RateLimited
from datastore.backends._cloudflare_budget import RequestBudget
from datastore.backends.cloudflare import CloudflareKVStore
from tests.cloudflare.local_api import API_TOKEN, LocalCloudflare

NS = "TESTNS"
START = 1_700_000_000.0


class FakeClock:
    """A clock that only moves when slept on (``slept`` records every sleep)."""

    def __init__(self, now: float = START) -> None:
        self.now = now
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += seconds

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def counting_kv(
    budget: RequestBudget,
    sent: list[float],
    clock: Callable[[], float],
    headers: dict[str, str] | None = None,
) -> CloudflareKVStore:
    """A KV store on a mock transport that records when (on ``clock``) each request arrived."""

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(clock())
        return httpx.Response(200, content=b"v", headers=headers or {})

    return CloudflareKVStore(
        "acct",
        "token",
        {NS: "ns1"},
        base_url="https://cloudflare.test/client/v4",
        transport=httpx.MockTransport(handler),
        sleep=lambda _: None,
        budget=budget,
    )


def test_1201_requests_in_300_s_never_send_the_1201st() -> None:
    clock = FakeClock()
    sent: list[float] = []
    budget = RequestBudget("token", max_wait=0, clock=clock, sleep=clock.sleep)
    kv = counting_kv(budget, sent, clock)
    for _ in range(1200):
        kv.get(NS, "k")
        clock.advance(0.2)  # 1,200 requests over 240 s
    with pytest.raises(RateLimited, match=r"budget of 1200 requests per 300 s.*not sending"):
        kv.get(NS, "k")
    assert len(sent) == 1200
    assert budget.status().remaining == 0


def test_past_the_budget_requests_wait_and_no_300_s_holds_more_than_1200() -> None:
    clock = FakeClock()
    sent: list[float] = []
    budget = RequestBudget("token", max_wait=400, clock=clock, sleep=clock.sleep)
    kv = counting_kv(budget, sent, clock)
    for _ in range(3000):
        kv.get(NS, "k")
        clock.advance(0.05)
    assert len(sent) == 3000
    assert clock.slept and budget.waited == sum(clock.slept)
    start = 0
    for end, moment in enumerate(sent):
        while sent[start] <= moment - 300:
            start += 1
        assert end - start + 1 <= 1200, f"{end - start + 1} requests within 300 s"
    assert sent[1200] >= sent[0] + 300


def test_threads_of_a_process_share_the_budget() -> None:
    clock = FakeClock()
    sent: list[float] = []
    budget = RequestBudget("token", limit=100, max_wait=0, clock=clock)
    kv = counting_kv(budget, sent, clock)
    refused: list[Exception] = []

    def work() -> None:
        for _ in range(30):
            try:
                kv.get(NS, "k")
            except RateLimited as exc:
                refused.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(sent) == 100 and len(refused) == 140


def _spend(store: str, start: threading.Event, results: multiprocessing.Queue) -> None:
    """One process: 1,000 requests at the same fake moment, never waiting."""
    sent: list[float] = []
    budget = RequestBudget("token", max_wait=0, store=store, clock=lambda: START)
    kv = counting_kv(budget, sent, lambda: START)
    start.wait(30)
    refused = 0
    for _ in range(1000):
        try:
            kv.get(NS, "k")
        except RateLimited:
            refused += 1
    results.put((len(sent), refused))


def test_two_processes_sharing_a_sqlite_budget_file_send_1200_together(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    store = f"sqlite:///{tmp_path / 'budget.sqlite3'}"
    RequestBudget("token", store=store).status()  # create the file before they race
    start = context.Event()
    results = context.Queue()
    processes = [context.Process(target=_spend, args=(store, start, results)) for _ in range(2)]
    for process in processes:
        process.start()
    start.set()
    counts = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(30)
    assert sum(sent for sent, _ in counts) == 1200
    assert sum(refused for _, refused in counts) == 800


def test_ratelimit_headers_update_the_budget() -> None:
    clock = FakeClock()
    sent: list[float] = []
    budget = RequestBudget("token", max_wait=0, clock=clock, sleep=clock.sleep)
    kv = counting_kv(budget, sent, clock, headers={"Ratelimit": '"default";r=5;t=30'})
    kv.get(NS, "k")
    assert budget.status().remaining == 5  # Cloudflare counts others using the token
    for _ in range(5):
        kv.get(NS, "k")
    with pytest.raises(RateLimited):
        kv.get(NS, "k")
    assert len(sent) == 6

    clock = FakeClock()
    budget = RequestBudget("token", max_wait=60, clock=clock, sleep=clock.sleep)
    kv = counting_kv(budget, sent, clock, headers={"Ratelimit": '"default";r=0;t=30'})
    kv.get(NS, "k")
    assert budget.status().held_for == 30
    kv.get(NS, "k")
    assert clock.slept == [30]


def test_status_reports_the_budget_left(cloudflare_api: LocalCloudflare) -> None:
    cloudflare_api.reset()
    budget = RequestBudget(API_TOKEN, limit=50, period=60)
    kv = CloudflareKVStore(**cloudflare_api.kv_options(budget=budget))
    kv.put(NS, "k", b"v")
    status = kv.status()
    assert status.healthy
    assert "request budget: 48 of 50 requests left per 60 s" in status.detail
    assert kv.budget_status().remaining == 48  # reading the budget sends nothing
