"""Kill a process with SIGKILL at random moments while it saves; every acknowledged save must
be in KV, and repair must bring the metadata to exactly match KV."""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from datamodel import Connection, verify
from datastore import Datastore
from datastore.backends.redis import RedisKVStore
from datastore.backends.sqlite import SQLiteDatabase, SQLiteKVStore
from tests.datamodel.conftest import routing
from tests.datamodel.models import Page
from tests.support import REDIS_URL, flush_test_redis, redis_or_skip

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 6


def run_and_kill(kind: str, directory: Path, prefix: str, rng: random.Random) -> list[str]:
    """Start a writer, let it run a random 0.3-1.2 s, SIGKILL it; return what it acknowledged."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.reliability.crash_worker",
            kind,
            str(directory),
            prefix,
            REDIS_URL,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    acknowledged: list[str] = []
    deadline = time.monotonic() + rng.uniform(0.3, 1.2)
    buffer = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.05)
        if ready:
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                break
            buffer += chunk
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    buffer += process.stdout.read()
    for line in buffer.decode().splitlines():
        if line.startswith("ACK "):
            acknowledged.append(line.split()[1])
    stderr = process.stderr.read().decode() if process.stderr else ""
    assert "Traceback" not in stderr, stderr
    return acknowledged


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_killed_writers_lose_no_acknowledged_save(kind: str, tmp_path) -> None:
    if kind == "redis":
        redis_or_skip()
        flush_test_redis()
    rng = random.Random(20261122)
    acknowledged: list[str] = []
    for round_number in range(ROUNDS):
        acknowledged += run_and_kill(kind, tmp_path, f"r{round_number}", rng)
    assert len(acknowledged) > ROUNDS  # the writers did work before dying

    kv = (
        RedisKVStore(REDIS_URL, key_prefix="nimbus-test:")
        if kind == "redis"
        else SQLiteKVStore(tmp_path / "kv.sqlite3")
    )
    connection = Connection(
        Datastore(kv, routing=routing()), SQLiteDatabase(tmp_path / "meta.sqlite3")
    )
    pages = Page.objects.system(using=connection)
    stored = pages.get_many([f"crash:{page_id}" for page_id in acknowledged])
    assert sorted(stored) == sorted(f"crash:{page_id}" for page_id in acknowledged)

    verify(connection, Page, repair=True)
    final = verify(connection, Page)
    assert final.drift == 0
    rows = connection.sql.execute("SELECT count(*) AS n FROM webpage_meta")[0]["n"]
    assert rows == final.checked >= len(acknowledged)
