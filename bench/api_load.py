"""The API load scenario: gunicorn with several workers on fresh stores (the sqlite default, or
Redis), bounded concurrent loopback clients for a fixed time, then every acknowledged create is
read back."""

from __future__ import annotations

import argparse
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .common import drop_redis_prefix, machine
from .load import LoadReport, missing_creates, run_load
from .server import Stores, gunicorn, manage

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"


@dataclass
class LoadResult:
    backend: str
    workers: int
    threads: int
    clients: int
    report: LoadReport
    missing: list[str]  # acknowledged creates that could not be read back
    listed_total: int  # the page list's total afterwards (the metadata rows)

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "workers": self.workers,
            "threads": self.threads,
            "clients": self.clients,
            **self.report.to_json(),
            "lost_writes": len(self.missing),
            "listed_total": self.listed_total,
        }


def api_key_and_project(base_url: str, env: dict[str, str]) -> tuple[str, str]:
    """A fresh user with an unthrottled key, and a project of theirs."""
    email = f"load-{uuid.uuid4().hex[:8]}@example.com"
    key = manage(env, "nimbus_create_key", email, "--create-user", "--rate-limit", "100000000")
    key = key.strip()
    created = httpx.post(
        f"{base_url}/api/projects/",
        json={"name": "load.example.com"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    created.raise_for_status()
    return key, created.json()["project_id"]


def load_scenario(
    backend: str,
    *,
    workers: int = 4,
    threads: int = 2,
    clients: int = 8,
    seconds: float = 30.0,
    redis_url: str = DEFAULT_REDIS_URL,
    directory: Path | None = None,
) -> LoadResult:
    """Run the scenario on fresh stores; Redis keys get a prefix private to this run."""
    with tempfile.TemporaryDirectory(prefix="nimbus-load-", dir=directory) as scratch:
        folder = Path(scratch)
        prefix = f"load-{uuid.uuid4().hex[:8]}:"
        stores = Stores.for_backend(backend, folder, redis_url=redis_url, key_prefix=prefix)
        env = stores.environment(folder)
        manage(env, "nimbus_initialize", "--no-seeds", "--verbosity", "0")
        try:
            with gunicorn(env, workers=workers, threads=threads) as base_url:
                key, project_id = api_key_and_project(base_url, env)
                report = run_load(base_url, key, project_id, clients=clients, seconds=seconds)
                missing = missing_creates(base_url, key, project_id, report)
                listed = httpx.get(
                    f"{base_url}/api/projects/{project_id}/pages/",
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=30,
                )
                listed.raise_for_status()
                listed_total = int(listed.json()["pagination"]["total"])
        finally:
            if backend == "redis":
                drop_redis_prefix(redis_url, prefix)
    return LoadResult(backend, workers, threads, clients, report, missing, listed_total)


HELP = "the API under bounded load: gunicorn, concurrent loopback clients, lost-write check"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend", action="append", choices=["sqlite", "redis"], help="repeatable (default both)"
    )
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)


def run(options: argparse.Namespace) -> dict[str, Any]:
    results = []
    for backend in options.backend or ["sqlite", "redis"]:
        result = load_scenario(
            backend,
            workers=options.workers,
            threads=options.threads,
            clients=options.clients,
            seconds=options.seconds,
            redis_url=options.redis_url,
        )
        figures = result.to_json()
        results.append(figures)
        transport_errors = sum(result.report.errors.values())
        print(
            f"{backend:7} workers={options.workers}x{options.threads} clients={options.clients} "
            f"{figures['seconds']}s: {figures['requests']} requests, {figures['per_second']}/s, "
            f"5xx={figures['server_errors']}, transport errors={transport_errors}, "
            f"acknowledged creates={figures['acknowledged_creates']}, "
            f"lost={figures['lost_writes']}, listed={figures['listed_total']}"
        )
        for operation, numbers in figures["operations"].items():
            print(
                f"    {operation:7} {numbers['requests']:6} req  {numbers['per_second']:8}/s  "
                f"p50 {numbers['p50_ms']} ms  p99 {numbers['p99_ms']} ms"
            )
    return {"machine": machine(), "load": results}
