"""What every run shares: the machine record, timing, tables, JSON output, Django setup."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """Where and when the figures were taken."""
    cpu = platform.processor() or platform.machine()
    memory_gib = None
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu = next(
            line.split(":", 1)[1].strip() for line in info.splitlines() if "model name" in line
        )
        total_kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory_gib = round(total_kib / 1024 / 1024, 1)
    except (OSError, StopIteration, ValueError, IndexError):
        pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": cpu,
        "memory_gib": memory_gib,
    }


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {path}", file=sys.stderr)


def median_seconds(run: Callable[[], Any], repetitions: int) -> float:
    """The median wall time of ``repetitions`` calls of ``run``."""
    samples = []
    for _ in range(repetitions):
        began = time.perf_counter()
        run()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain aligned table on stdout."""
    cells = [[str(cell) for cell in row] for row in [headers, *rows]]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    for number, row in enumerate(cells):
        print(
            "  ".join(
                cell.rjust(width) if column else cell.ljust(width)
                for column, (cell, width) in enumerate(zip(row, widths, strict=True))
            )
        )
        if number == 0:
            print("  ".join("-" * width for width in widths))


def setup_django(directory: Path) -> None:
    """Configure Django with ``bench.settings`` on files in ``directory`` and migrate the Django
    database (``OrmPage`` and the token table). The Nimbus stores default to SQLite files there
    too. Call once per process, before Django imports."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    os.environ["DJANGO_DEBUG"] = "false"  # DEBUG would record every ORM query in memory
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-" + os.urandom(16).hex())
    os.environ["NIMBUS_VAR_DIR"] = str(directory)
    os.environ["BENCH_DJANGO_DB"] = str(directory / "django.sqlite3")
    for variable in ("NIMBUS_KV_URL", "NIMBUS_D1_URL", "NIMBUS_ADAPTER"):
        os.environ.pop(variable, None)  # settings.NIMBUS decides, not the caller's environment
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def empty_kv(store: Any) -> None:
    """Remove every namespace of a KV store with its keys, the namespace registry included."""
    for namespace in store.namespaces():
        store.delete_namespace(namespace, recursive=True)


def drop_redis_prefix(redis_url: str, prefix: str) -> None:
    """Remove every key a run wrote to Redis under ``prefix``."""
    from datastore.backends.redis import RedisKVStore

    store = RedisKVStore(redis_url, key_prefix=prefix)
    try:
        empty_kv(store)
    finally:
        store.close()
