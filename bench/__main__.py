"""``python -m bench``: the benchmark suite. ``python -m bench --help`` lists the runs."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """Where and when the figures were taken."""
    import os

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


def run_load(options: argparse.Namespace) -> dict[str, Any]:
    from .api_load import load_scenario

    results = []
    for backend in options.backend:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    runs = parser.add_subparsers(dest="run", required=True)
    commands: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {}

    load = runs.add_parser("load", help="the API under bounded load (gunicorn, loopback)")
    load.add_argument("--backend", action="append", choices=["sqlite", "redis"], help="repeatable")
    load.add_argument("--workers", type=int, default=4)
    load.add_argument("--threads", type=int, default=2)
    load.add_argument("--clients", type=int, default=16)
    load.add_argument("--seconds", type=float, default=30.0)
    load.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    load.add_argument("--json", help="also write the figures to this file")
    commands["load"] = run_load

    options = parser.parse_args(argv)
    if options.run == "load" and not options.backend:
        options.backend = ["sqlite", "redis"]
    payload = commands[options.run](options)
    write_json(options.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
