"""nimbus_backup, nimbus_sync and nimbus_initialize on the Cloudflare REST backends pace
themselves on the API token's request budget and say so in their progress output."""

from __future__ import annotations

from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from nimbus import conf
from tests.cloudflare.local_api import LocalCloudflare

# A budget small and short enough to run out during each command, in real time.
BUDGET = {"budget_limit": 6, "budget_period": 0.6}


@pytest.fixture
def tight_budget(settings, cloudflare_api: LocalCloudflare) -> Iterator[None]:
    cloudflare_api.reset()
    settings.NIMBUS = {
        "KV": {
            "BACKEND": "datastore.backends.cloudflare.CloudflareKVStore",
            "OPTIONS": cloudflare_api.kv_options(**BUDGET),
        },
        "D1": {
            "BACKEND": "datastore.backends.cloudflare.CloudflareD1Database",
            "OPTIONS": cloudflare_api.d1_options(**BUDGET),
        },
        "ADAPTER": "kv",
    }
    conf.reset()
    yield
    conf.reset()
    cloudflare_api.reset()


def run(*args: str) -> str:
    err = StringIO()
    call_command(*args, stdout=StringIO(), stderr=err)
    return err.getvalue()


def test_commands_pace_on_the_budget(tight_budget: None, tmp_path: Path) -> None:
    budget = conf.kv_store().budget  # type: ignore[attr-defined]
    assert conf.sql_database().budget is budget  # type: ignore[attr-defined]
    for args in (
        ("nimbus_initialize", "--no-seeds", "--verbosity", "2"),
        ("nimbus_sync", "--verbosity", "2"),
        ("nimbus_backup", str(tmp_path / "backup.jsonl.gz")),
    ):
        waited = budget.waited
        output = run(*args)
        assert "pacing: waiting" in output, args
        assert "Cloudflare API budget of 6 requests per 0.6 s for this API token" in output
        assert budget.waited > waited
    assert budget.max_wait == 60  # the commands' patience ends with them
    assert "Cloudflare API budget:" in run("nimbus_sync", "--verbosity", "2")
