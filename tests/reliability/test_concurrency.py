"""Many threads and processes updating the same objects through the model layer lose nothing:
every update either lands or raises Conflict, and the final state is exactly the applied ones.
On Cloudflare KV, which has no compare-and-set, the last writer wins, and the test shows that."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest

from datamodel import Connection, DoesNotExist, create_tables
from datastore import Conflict, Datastore, KVStore
from datastore.backends.sqlite import SQLiteDatabase
from tests.datamodel.conftest import routing
from tests.datamodel.models import TEST_MODELS, Page
from tests.support import REDIS_URL, make_kv, make_sql

WORKERS, ATTEMPTS = 4, 15


def connect(name: str, tmp_path: Path, cloudflare=None, *, fresh: bool = True) -> Connection:
    """Stores on files or servers every process can open; ``fresh`` empties them first."""
    kv: KVStore
    if name == "sqlite":
        from datastore.backends.sqlite import SQLiteKVStore

        kv = SQLiteKVStore(tmp_path / "kv.sqlite3")
    elif name == "redis" and not fresh:
        from datastore.backends.redis import RedisKVStore

        kv = RedisKVStore(REDIS_URL, key_prefix="nimbus-test:")
    else:
        kv = make_kv(name, tmp_path, cloudflare).store
    sql = (
        make_sql("d1", tmp_path, cloudflare)
        if cloudflare
        else SQLiteDatabase(tmp_path / "m.sqlite3")
    )
    return Connection(Datastore(kv, routing=routing()), sql)


def attempt_updates(connection: Connection, worker: str, attempts: int) -> list[str]:
    """Add this worker's tag ``attempts`` times; return the tags that landed."""
    pages = Page.objects.auth("alice", using=connection)
    landed = []
    for number in range(attempts):
        page = pages.get(project_id="p", page_id="shared")
        tag = f"{worker}-{number}"
        page.set("tags", [*page.get("tags"), tag])
        try:
            page.save()
        except Conflict:
            continue
        landed.append(tag)
    return landed


def _process(name: str, tmp_path: str, worker: str, results) -> None:
    connection = connect(name, Path(tmp_path), fresh=False)
    results.put(attempt_updates(connection, worker, ATTEMPTS))


def setup(connection: Connection) -> None:
    create_tables(connection.sql, TEST_MODELS)
    Page.objects.auth("alice", using=connection).create(
        project_id="p", page_id="shared", url="https://example.com", tags=[]
    )


def check(connection: Connection, landed: list[str]) -> None:
    page = Page.objects.auth("alice", using=connection).get(project_id="p", page_id="shared")
    assert sorted(page.get("tags")) == sorted(landed)  # exactly the updates that landed
    assert page.get("_version") == 1 + len(landed)
    row = connection.sql.execute("SELECT tags, _version FROM webpage_meta")[0]
    assert row["_version"] == page.get("_version")


@pytest.mark.parametrize("name", ["sqlite", "redis"])
def test_threads_lose_no_update(name: str, tmp_path) -> None:
    connection = connect(name, tmp_path)
    setup(connection)
    results: list[list[str]] = []
    threads = [
        threading.Thread(
            target=lambda w=w: results.append(attempt_updates(connection, f"t{w}", ATTEMPTS))
        )
        for w in range(WORKERS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    landed = [tag for tags in results for tag in tags]
    assert landed  # some landed, the rest raised Conflict
    check(connection, landed)


@pytest.mark.parametrize("name", ["sqlite", "redis"])
def test_processes_lose_no_update(name: str, tmp_path) -> None:
    connection = connect(name, tmp_path)
    setup(connection)
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    workers = [
        context.Process(target=_process, args=(name, str(tmp_path), f"p{w}", results))
        for w in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    landed = [tag for _ in workers for tag in results.get(timeout=120)]
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0] * WORKERS
    check(connection, landed)


def test_cloudflare_is_last_writer_wins(tmp_path, cloudflare_api) -> None:
    """No compare-and-set: two stale copies both save, and the second silently replaces the
    first (documented). No Conflict is raised."""
    connection = connect("cloudflare", tmp_path, cloudflare_api)
    setup(connection)
    pages = Page.objects.auth("alice", using=connection)
    first = pages.get(project_id="p", page_id="shared")
    second = pages.get(project_id="p", page_id="shared")
    first.set("tags", ["first"])
    first.save()
    second.set("tags", ["second"])
    second.save()  # would be a Conflict on memory, SQLite or Redis
    assert pages.get(project_id="p", page_id="shared").get("tags") == ["second"]
    with pytest.raises(DoesNotExist):
        pages.get(project_id="p", page_id="missing")
