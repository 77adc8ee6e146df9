"""``python -m bench ops`` runs end to end on tiny sizes, with exact round trips per operation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support import REDIS_URL, redis_or_skip

ROOT = Path(__file__).resolve().parents[2]

# This project's storage round trips per operation: (KV, metadata SQL).
NIMBUS_ROUND_TRIPS = {
    "create": (2, 1),  # its project (the reference checked), then the object; its row
    "get": (1, 0),
    "update": (2, 1),  # read, then object and row
    "soft_delete": (2, 1),
    "page": (0, 1),  # rows and total in one batch
    "page_with_data": (1, 1),  # + one bulk read of the objects
    "values_page": (0, 1),  # dicts of three sync fields from the rows alone
    "aggregate_status": (0, 1),  # one GROUP BY
    "bulk_create": (2, 1),  # one bulk read of the projects, one put_many; one batch of upserts
}
# The operations the KV layer alone (and redis-om on plain Redis) cannot do.
QUERIES = {"page", "page_with_data", "values_page", "aggregate_status"}
# The queries that are one statement for every contender: one SQL round trip, no KV.
ONE_STATEMENT = {"values_page", "aggregate_status"}


def assert_round_trips(figures: dict[str, Any], expected: tuple[int, int], operation: str) -> None:
    kv, sql = expected
    assert figures["kv_round_trips"] == kv, operation
    assert figures["sql_round_trips"] == sql, operation
    assert figures["round_trips"] == kv + sql, operation


def run_ops(
    tmp_path: Path, *arguments: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``python -m bench ops`` on tiny sizes; the process and the results it wrote."""
    output = tmp_path / "ops.json"
    sizes = ["--size", "20", "--repeat", "2", "--bulk", "50", "--pages", "5"]
    done = subprocess.run(
        [sys.executable, "-m", "bench", "ops", *arguments, *sizes, "--json", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done, json.loads(output.read_text())["results"]


def test_ops_bench_reports_every_operation_side_by_side(tmp_path: Path) -> None:
    done, results = run_ops(tmp_path, "--backend", "sqlite")
    assert set(results) == set(NIMBUS_ROUND_TRIPS)
    for operation, round_trips in NIMBUS_ROUND_TRIPS.items():
        row = results[operation]
        expected = {"nimbus", "raw", "django"} | (set() if operation in QUERIES else {"datastore"})
        assert set(row) == expected, operation
        assert_round_trips(row["nimbus"], round_trips, operation)
        assert row["raw"]["x_raw"] == 1.0
        assert all(figures["ops_per_second"] > 0 for figures in row.values())
    for operation in ONE_STATEMENT:
        for subject in ("raw", "django"):
            assert_round_trips(results[operation][subject], (0, 1), f"{operation} {subject}")
    assert "x raw" in done.stdout and "nimbus" in done.stdout
    assert "values_page" in done.stdout and "aggregate_status" in done.stdout


def test_ops_bench_on_redis_with_the_pipelined_by_hand_contender(tmp_path: Path) -> None:
    redis_or_skip()
    subjects = ["--subject", "nimbus", "--subject", "raw", "--subject", "raw-pipelined"]
    done, results = run_ops(tmp_path, "--backend", "redis", "--redis-url", REDIS_URL, *subjects)
    for operation, round_trips in NIMBUS_ROUND_TRIPS.items():
        row = results[operation]
        assert set(row) == {"nimbus", "raw", "raw-pipelined"}, operation
        assert_round_trips(row["nimbus"], round_trips, operation)
        for key in ("kv_round_trips", "sql_round_trips"):
            assert row["raw-pipelined"][key] == row["raw"][key], operation
    assert "raw-pipelined" in done.stdout
