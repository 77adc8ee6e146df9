"""The API under a bounded load: gunicorn with several workers, concurrent loopback clients for
a fixed time, on the sqlite default and on Redis. No 5xx, no transport error, and every
acknowledged create is readable afterwards and listed in the metadata."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.api_load import load_scenario
from tests.support import REDIS_URL, redis_or_skip

SECONDS = 4.0


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_api_under_load_loses_nothing(backend: str, tmp_path: Path) -> None:
    if backend == "redis":
        redis_or_skip()
    result = load_scenario(
        backend,
        workers=3,
        threads=2,
        clients=8,
        seconds=SECONDS,
        redis_url=REDIS_URL,
        directory=tmp_path,
    )
    report = result.report
    assert report.server_errors == 0, result.to_json()
    assert not report.errors, result.to_json()
    assert set(report.statuses) <= {200, 201}, result.to_json()
    assert len(report.acknowledged) >= 50, result.to_json()
    assert result.missing == []
    assert result.listed_total == len(report.acknowledged)
