"""``python -m bench ops``: the cost of each operation on pages, in one run, side by side: this
project, the raw clients doing the same storage work by hand, Django's ORM on an equivalent
model (SQLite), and redis-om (a HashModel on the same Redis) where it has the operation."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from .common import empty_kv, machine, print_table, setup_django
from .subjects import Subject

HELP = "cost per operation: this project, the raw clients, Django's ORM and redis-om"
BACKENDS = ["memory", "sqlite", "redis", "cloudflare-local"]
OPERATIONS = [
    "create",
    "get",
    "update",
    "soft_delete",
    "page",
    "page_with_data",
    "values_page",
    "aggregate_status",
    "bulk_create",
]
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
SUBJECTS = ["nimbus", "datastore", "raw", "raw-pipelined", "django", "redis-om"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=BACKENDS, default="sqlite")
    parser.add_argument("--size", type=int, default=1000, help="objects per timed operation")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions (medians are taken)")
    parser.add_argument("--bulk", type=int, default=10_000, help="objects per bulk create")
    parser.add_argument("--pages", type=int, default=200, help="list pages per timed run")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument(
        "--subject",
        action="append",
        choices=SUBJECTS,
        help="repeatable (default: every one the backend allows)",
    )


def nimbus_settings(
    backend: str, directory: Path, redis_url: str, prefix: str, stack: ExitStack
) -> dict[str, Any]:
    """``settings.NIMBUS`` for the backend under test (metadata in SQLite except on Cloudflare)."""
    metadata = {
        "BACKEND": "datastore.backends.sqlite.SQLiteDatabase",
        "OPTIONS": {"path": str(directory / "metadata.sqlite3")},
    }
    if backend == "memory":
        return {
            "KV": {"BACKEND": "datastore.backends.memory.MemoryKVStore"},
            "D1": {"BACKEND": "datastore.backends.memory.MemorySQLDatabase"},
        }
    if backend == "sqlite":
        kv = {
            "BACKEND": "datastore.backends.sqlite.SQLiteKVStore",
            "OPTIONS": {"path": str(directory / "kv.sqlite3")},
        }
        return {"KV": kv, "D1": metadata}
    if backend == "redis":
        kv = {
            "BACKEND": "datastore.backends.redis.RedisKVStore",
            "OPTIONS": {"url": redis_url, "key_prefix": prefix},
        }
        return {"KV": kv, "D1": metadata}
    from tests.cloudflare.local_api import LocalCloudflare

    local = LocalCloudflare()
    stack.callback(local.stop)
    return {
        "KV": {
            "BACKEND": "datastore.backends.cloudflare.CloudflareKVStore",
            "OPTIONS": local.kv_options(),
        },
        "D1": {
            "BACKEND": "datastore.backends.cloudflare.CloudflareD1Database",
            "OPTIONS": local.d1_options(),
        },
    }


@contextmanager
def subjects(options: argparse.Namespace, directory: Path) -> Iterator[list[Subject]]:
    """Every contender for this backend, on fresh stores; cleaned up afterwards."""
    from django.conf import settings

    from datamodel import initialize
    from datamodel.schema import create_statements
    from nimbus import conf
    from nimbus.models import Page, Project

    from .subjects.datastore import DatastorePages
    from .subjects.nimbus import NimbusPages
    from .subjects.orm import OrmPages

    wanted = set(options.subject or SUBJECTS)
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    with ExitStack() as stack:
        settings.NIMBUS = nimbus_settings(
            options.backend, directory, options.redis_url, prefix, stack
        )
        conf.reset()
        stack.callback(conf.reset)
        connection = conf.get_connection()
        if options.backend == "redis":  # both project contenders write under the run's prefix
            stack.callback(empty_kv, connection.datastore.kv)
        initialize(connection, [Page, Project], seeds=False)
        chosen: list[Subject] = []
        if "nimbus" in wanted:
            chosen.append(NimbusPages(connection))
        if "datastore" in wanted:
            chosen.append(DatastorePages(conf.get_datastore()))
        if "raw" in wanted and options.backend in ("sqlite", "redis"):
            from .subjects.raw import RawPages, RedisKV, SQLiteKV

            kv = (
                SQLiteKV(directory / "raw-kv.sqlite3")
                if options.backend == "sqlite"
                else RedisKV(options.redis_url, f"raw-{prefix}")
            )
            chosen.append(
                RawPages(kv, directory / "raw-meta.sqlite3", create_statements(Page._meta))
            )
        if "raw-pipelined" in wanted and options.backend == "redis":
            from .subjects.raw import RawPages, RedisKV

            chosen.append(
                RawPages(
                    RedisKV(options.redis_url, f"rawp-{prefix}"),
                    directory / "rawp-meta.sqlite3",
                    create_statements(Page._meta),
                    pipelined=True,
                )
            )
        if "django" in wanted:
            chosen.append(OrmPages())
        if "redis-om" in wanted and options.backend == "redis":
            try:
                from .subjects.redisom import RedisOmPages

                chosen.append(RedisOmPages(options.redis_url, f"om-{prefix}"))
            except ImportError:
                print("redis-om is not installed: pip install -r bench/requirements.txt")
        for subject in chosen:
            stack.callback(subject.close)
        yield chosen


def each(action: Callable[[int], None], numbers: range) -> Callable[[], None]:
    """A step that applies ``action`` to every number."""

    def step() -> None:
        for number in numbers:
            action(number)

    return step


def measure(
    subject: Subject, repetition: int, options: argparse.Namespace
) -> dict[str, tuple[float, tuple[float, float] | None]]:
    """One repetition of every operation: (seconds per operation, KV and SQL round trips per
    operation)."""
    base = 10_000_000 * (repetition + 1)
    numbers = range(base, base + options.size)
    pages = range(options.pages)
    bulk = range(base + 5_000_000, base + 5_000_000 + options.bulk)
    steps: dict[str, tuple[Callable[[], None], int]] = {
        "create": (each(subject.create, numbers), len(numbers)),
        "get": (each(subject.get, numbers), len(numbers)),
        "update": (each(subject.update, numbers), len(numbers)),
        "page": (each(lambda _: subject.page(), pages), len(pages)),
        "page_with_data": (each(lambda _: subject.page_with_data(), pages), len(pages)),
        "values_page": (each(lambda _: subject.values_page(), pages), len(pages)),
        "aggregate_status": (each(lambda _: subject.aggregate_status(), pages), len(pages)),
        "soft_delete": (each(subject.soft_delete, numbers), len(numbers)),
        "bulk_create": (lambda: subject.bulk_create(bulk), 1),
    }
    figures: dict[str, tuple[float, tuple[float, float] | None]] = {}
    for operation, (step, count) in steps.items():
        trips_before = subject.round_trips()
        began = time.perf_counter()
        try:
            step()
        except NotImplementedError:
            continue
        elapsed = time.perf_counter() - began
        trips_after = subject.round_trips()
        trips = (
            None
            if trips_before is None or trips_after is None
            else (
                (trips_after[0] - trips_before[0]) / count,
                (trips_after[1] - trips_before[1]) / count,
            )
        )
        figures[operation] = (elapsed / count, trips)
    return figures


def run(options: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="nimbus-bench-") as scratch:
        directory = Path(scratch)
        setup_django(directory)
        samples: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        trips: dict[str, dict[str, tuple[float, float] | None]] = defaultdict(dict)
        with subjects(options, directory) as contenders:
            for repetition in range(options.repeat):
                for subject in contenders:
                    for operation, (seconds, round_trips) in measure(
                        subject, repetition, options
                    ).items():
                        samples[subject.name][operation].append(seconds)
                        trips[subject.name][operation] = round_trips
            names = [subject.name for subject in contenders]
    results = summarize(names, samples, trips)
    print_results(options, names, results)
    return {
        "machine": machine(),
        "backend": options.backend,
        "size": options.size,
        "repeat": options.repeat,
        "bulk": options.bulk,
        "results": results,
    }


def summarize(
    names: list[str],
    samples: dict[str, dict[str, list[float]]],
    trips: dict[str, dict[str, tuple[float, float] | None]],
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per operation and subject: median seconds, ops/s, round trips (in all, and KV and SQL
    apart), and the cost relative to the raw clients (``x_raw``: 1.30 means 30% slower than by
    hand)."""
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for operation in OPERATIONS:
        row: dict[str, dict[str, Any]] = {}
        for name in names:
            if operation not in samples[name]:
                continue
            median = statistics.median(samples[name][operation])
            kv_sql = trips[name].get(operation)
            row[name] = {
                "median_ms": round(median * 1000, 4),
                "ops_per_second": round(1 / median, 1) if median else None,
                "round_trips": None if kv_sql is None else kv_sql[0] + kv_sql[1],
                "kv_round_trips": None if kv_sql is None else kv_sql[0],
                "sql_round_trips": None if kv_sql is None else kv_sql[1],
            }
        raw = row.get("raw")
        for figures in row.values():
            figures["x_raw"] = round(figures["median_ms"] / raw["median_ms"], 2) if raw else None
        results[operation] = row
    return results


def print_results(
    options: argparse.Namespace, names: list[str], results: dict[str, dict[str, dict[str, Any]]]
) -> None:
    print(
        f"backend={options.backend} size={options.size} repeat={options.repeat} "
        f"bulk={options.bulk} (medians; ops/s, x raw, round trips per operation: KV+SQL)"
    )
    rows = []
    for operation, row in results.items():
        cells = [operation]
        for name in names:
            figures = row.get(name)
            if figures is None:
                cells.append("n/a")
                continue
            ratio = f" x{figures['x_raw']:.2f}" if figures["x_raw"] is not None else ""
            kv, sql = figures["kv_round_trips"], figures["sql_round_trips"]
            trips_text = f" rt {round(kv, 2):g}+{round(sql, 2):g}" if kv is not None else ""
            rate = (
                f"{figures['median_ms']:,.0f} ms"
                if operation == "bulk_create"
                else f"{figures['ops_per_second']:,.0f}/s"
            )
            cells.append(f"{rate}{ratio}{trips_text}")
        rows.append(cells)
    print_table(["operation", *names], rows)
