"""``python -m bench api``: API throughput and round trips, beside a plain DRF ModelViewSet.

The same pages are loaded into Nimbus (batch upload through the API) and into ``OrmPage`` (the
Django ORM), then gunicorn serves ``bench.settings`` and a fixed request budget is sent to each of
four endpoints (Nimbus list and detail, ORM list and detail) by concurrent loopback clients.
The storage round trips of single requests are measured in-process (``bench_round_trips``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from datamodel import ids

from .common import drop_redis_prefix, machine, print_table
from .load import LoadReport, run_requests
from .server import Stores, gunicorn, manage

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
BATCH_PAGES = 1000  # the batch upload's maximum per request
LIST_PARAMS = {"limit": 20, "ordering": "-priority"}

HELP = "API requests/s and latency of page list and detail, Nimbus beside a DRF ModelViewSet"


@dataclass
class Target:
    """The running server and the data both stacks hold."""

    base_url: str
    api_key: str
    orm_token: str
    project_id: str
    page_ids: list[str]


def page_bodies(count: int) -> list[dict[str, Any]]:
    """``count`` page uploads with varied priorities (deterministic)."""
    return [
        {
            "source_path": f"dist/bench/section-{number % 40}/page-{number:05}.html",
            "priority": 1 + (number * 7) % 10,
            "extraction": {"engine": "html", "head": {"title": f"Page {number}"}},
        }
        for number in range(count)
    ]


def load_nimbus(base_url: str, api_key: str, pages: int) -> tuple[str, list[dict[str, Any]]]:
    """A project with ``pages`` pages uploaded in batches; the project id and the ORM rows of the
    same pages (same ids, batch ids, paths, priorities, extraction and status)."""
    http = httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=300
    )
    with http:
        created = http.post("/api/projects/", json={"name": "bench.example.com"})
        created.raise_for_status()
        project = created.json()
        bodies = page_bodies(pages)
        rows: list[dict[str, Any]] = []
        for start in range(0, len(bodies), BATCH_PAGES):
            chunk = bodies[start : start + BATCH_PAGES]
            response = http.post(
                f"/api/projects/{project['project_id']}/batches/", json={"pages": chunk}
            )
            if response.status_code != 201:
                raise RuntimeError(f"batch upload answered {response.status_code}: {response.text}")
            batch = response.json()
            rows.extend(
                {
                    "page_id": ids.page_id(project["project_id"], body["source_path"]),
                    "project_id": project["project_id"],
                    "batch_id": batch["batch_id"],
                    "source_path": body["source_path"],
                    "uploaded": batch["created_at"],
                    "status": "queued",
                    "priority": body["priority"],
                    "extraction": body["extraction"],
                    "created_by": project["user_id"],
                }
                for body in chunk
            )
    return project["project_id"], rows


def prepare(base_url: str, env: dict[str, str], folder: Path, pages: int) -> Target:
    """The Nimbus key, project and pages, and the same rows with a token for the ORM."""
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    key = manage(env, "nimbus_create_key", email, "--create-user", "--rate-limit", "100000000")
    key = key.strip()
    project_id, rows = load_nimbus(base_url, key, pages)
    rows_file = folder / "orm-rows.json"
    rows_file.write_text(json.dumps(rows))
    token = manage(env, "bench_orm_load", str(rows_file)).strip()
    return Target(base_url, key, token, project_id, [row["page_id"] for row in rows])


def check_settings(target: Target) -> None:
    """Fail early unless gunicorn serves ``bench.settings`` and both stacks hold every page."""
    listed = httpx.get(
        f"{target.base_url}/bench/orm/projects/{target.project_id}/pages/",
        params={"limit": 1},
        headers={"Authorization": f"Token {target.orm_token}"},
        timeout=30,
    )
    if listed.status_code == 404:
        raise RuntimeError("gunicorn does not serve bench.settings: /bench/orm/ is a 404")
    listed.raise_for_status()
    nimbus = httpx.get(
        f"{target.base_url}/api/projects/{target.project_id}/pages/",
        params={"limit": 1},
        headers={"Authorization": f"Bearer {target.api_key}"},
        timeout=30,
    )
    nimbus.raise_for_status()
    held = {"ORM": listed.json()["count"], "Nimbus": nimbus.json()["pagination"]["total"]}
    if set(held.values()) != {len(target.page_ids)}:
        raise RuntimeError(f"pages held {held}, expected {len(target.page_ids)} in each")


def endpoint_requests(
    target: Target,
) -> dict[str, tuple[dict[str, str], Callable[[httpx.Client], httpx.Response]]]:
    """Per endpoint: the headers and how to send one request."""
    nimbus = {"Authorization": f"Bearer {target.api_key}"}
    orm = {"Authorization": f"Token {target.orm_token}"}
    pages = f"/api/projects/{target.project_id}/pages/"
    orm_pages = f"/bench/orm/projects/{target.project_id}/pages/"

    def detail(prefix: str) -> Callable[[httpx.Client], httpx.Response]:
        return lambda http: http.get(f"{prefix}{random.choice(target.page_ids)}/")

    return {
        "nimbus_page_list": (nimbus, lambda http: http.get(pages, params=LIST_PARAMS)),
        "nimbus_page_detail": (nimbus, detail(pages)),
        "orm_page_list": (orm, lambda http: http.get(orm_pages, params=LIST_PARAMS)),
        "orm_page_detail": (orm, detail(orm_pages)),
    }


def throughput(target: Target, *, clients: int, requests: int) -> dict[str, LoadReport]:
    """Each endpoint in turn: a short unmeasured warm-up, then the request budget."""
    reports = {}
    for name, (headers, send) in endpoint_requests(target).items():
        run_requests(target.base_url, headers, send, clients=clients, requests=clients * 5)
        reports[name] = run_requests(
            target.base_url, headers, send, clients=clients, requests=requests, name=name
        )
    return reports


def round_trips(env: dict[str, str], target: Target) -> dict[str, dict[str, int]]:
    """Storage round trips of single requests, measured in a ``manage.py`` process."""
    output = manage(
        env,
        "bench_round_trips",
        f"--key={target.api_key}",
        f"--token={target.orm_token}",
        f"--project={target.project_id}",
        f"--page={target.page_ids[0]}",
    )
    figures: dict[str, dict[str, int]] = json.loads(output)
    return figures


def api_scenario(
    backend: str,
    *,
    pages: int,
    workers: int,
    threads: int,
    clients: int,
    requests: int,
    redis_url: str = DEFAULT_REDIS_URL,
) -> dict[str, Any]:
    """The whole run on fresh stores in a temporary directory; Redis keys get a private prefix."""
    with tempfile.TemporaryDirectory(prefix="nimbus-bench-api-") as scratch:
        folder = Path(scratch)
        prefix = f"bench-api-{uuid.uuid4().hex[:8]}:"
        stores = Stores.for_backend(backend, folder, redis_url=redis_url, key_prefix=prefix)
        env = {
            **stores.environment(folder),
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "BENCH_DJANGO_DB": str(folder / "django.sqlite3"),
        }
        try:
            manage(env, "migrate", "--verbosity", "0")
            manage(env, "nimbus_initialize", "--no-seeds", "--verbosity", "0")
            with gunicorn(env, workers=workers, threads=threads) as base_url:
                target = prepare(base_url, env, folder, pages)
                check_settings(target)
                trips = round_trips(env, target)
                reports = throughput(target, clients=clients, requests=requests)
        finally:
            if backend == "redis":
                drop_redis_prefix(redis_url, prefix)
    return {
        "backend": backend,
        "pages": pages,
        "workers": workers,
        "threads": threads,
        "clients": clients,
        "requests_per_endpoint": requests,
        "endpoints": {name: _figures(report) for name, report in reports.items()},
        "round_trips": trips,
        "all_200": all(_figures(report)["all_200"] for report in reports.values()),
    }


def _figures(report: LoadReport) -> dict[str, Any]:
    numbers = next(iter(report.per_operation().values()), {})
    return {
        "requests": report.requests,
        "seconds": round(report.seconds, 2),
        "per_second": numbers.get("per_second", 0.0),
        "p50_ms": numbers.get("p50_ms"),
        "p99_ms": numbers.get("p99_ms"),
        "statuses": {str(status): count for status, count in sorted(report.statuses.items())},
        "transport_errors": dict(report.errors),
        "all_200": set(report.statuses) == {200} and not report.errors,
    }


def _trips_text(figures: dict[str, int], suffix: str = "") -> str:
    if f"kv_and_sql{suffix}" in figures:
        return f"{figures[f'kv_and_sql{suffix}']} KV+SQL"
    return f"{figures[f'kv{suffix}']} KV + {figures[f'sql{suffix}']} SQL"


def print_report(result: dict[str, Any]) -> None:
    """The throughput and round-trip tables, and a loud line for anything but 200."""
    trips = result["round_trips"]
    print(
        f"\n{result['backend']}: {result['pages']} pages, gunicorn {result['workers']} workers x "
        f"{result['threads']} threads, {result['clients']} clients, "
        f"{result['requests_per_endpoint']} requests per endpoint"
    )
    rows = []
    for name, figures in result["endpoints"].items():
        statuses = ", ".join(f"{status}: {count}" for status, count in figures["statuses"].items())
        rows.append(
            [
                name,
                figures["requests"],
                figures["per_second"],
                figures["p50_ms"],
                figures["p99_ms"],
                statuses,
            ]
        )
    print_table(["endpoint", "requests", "req/s", "p50 ms", "p99 ms", "statuses"], rows)
    print()
    trip_rows = []
    for name, figures in trips.items():
        if name.startswith("nimbus_"):
            throttle = figures.get("kv", figures.get("kv_and_sql", 0)) - figures.get(
                "kv_without_throttle", figures.get("kv_and_sql_without_throttle", 0)
            )
            stores = f"{_trips_text(figures, '_without_throttle')} + {throttle} throttle counter"
        else:
            stores = "-"
        trip_rows.append([name, stores, figures["django_sql"]])
    print_table(["one request", "Nimbus stores (round trips)", "Django DB queries"], trip_rows)
    print("Nimbus requests pay the API throttle's counter; the ORM viewset has no throttle.")
    for name, figures in result["endpoints"].items():
        if not figures["all_200"]:
            print(
                f"!!! {name}: not every request answered 200: statuses {figures['statuses']}, "
                f"transport errors {figures['transport_errors']}",
                file=sys.stderr,
            )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The run's options (every size has a default that fits a laptop)."""
    parser.add_argument("--backend", choices=["sqlite", "redis"], default="sqlite")
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=3000, help="per endpoint")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)


def run(options: argparse.Namespace) -> dict[str, Any]:
    """Run the scenario, print the tables, return the figures with the machine record."""
    if options.pages < 1 or options.clients < 1 or options.requests < 1:
        raise SystemExit("--pages, --clients and --requests must be at least 1")
    result = api_scenario(
        options.backend,
        pages=options.pages,
        workers=options.workers,
        threads=options.threads,
        clients=options.clients,
        requests=options.requests,
        redis_url=options.redis_url,
    )
    print_report(result)
    return {"machine": machine(), "api": result}
