"""Faults from the backends: 5xx, 429, slow answers and dropped connections from the Cloudflare
API, and a Redis restart. Operations either succeed after bounded retries or fail with a clear
error, and nothing is left half-written that repair cannot fix."""

from __future__ import annotations

import socket
import subprocess
import threading
import time

import pytest

from datamodel import Connection, SyncError, create_tables, verify
from datastore import Datastore, Unavailable
from datastore.backends.cloudflare import CloudflareD1Database, CloudflareKVStore
from datastore.backends.memory import MemorySQLDatabase
from datastore.backends.redis import RedisKVStore
from tests.cloudflare.local_api import LocalCloudflare
from tests.datamodel.conftest import routing
from tests.datamodel.models import TEST_MODELS, Page
from tests.support import free_port


@pytest.fixture
def cloudflare(cloudflare_api: LocalCloudflare) -> Connection:
    cloudflare_api.reset()
    kv = CloudflareKVStore(**cloudflare_api.kv_options(sleep=lambda _: None, timeout=1.0))
    sql = CloudflareD1Database(**cloudflare_api.d1_options(sleep=lambda _: None, timeout=1.0))
    connection = Connection(Datastore(kv, routing=routing()), sql)
    create_tables(sql, TEST_MODELS)
    return connection


def pages(connection: Connection):
    return Page.objects.auth("alice", using=connection)


def test_transient_errors_are_retried(
    cloudflare: Connection, cloudflare_api: LocalCloudflare
) -> None:
    cloudflare_api.inject_faults(
        [{"status": 503}, {"status": 429, "retry_after": 1}, {"delay_ms": 1500}]
    )
    page = pages(cloudflare).create(project_id="p", page_id="a", url="https://e.com")
    assert pages(cloudflare).get(page.kv_id).get("url") == "https://e.com"
    assert verify(cloudflare, Page).drift == 0


def test_a_metadata_outage_is_a_clear_error_and_repairable(
    cloudflare: Connection, cloudflare_api: LocalCloudflare
) -> None:
    cloudflare_api.requests_seen()
    # the KV write goes through; every try of the metadata upsert then fails
    cloudflare_api.inject_faults([{}] + [{"status": 500}] * 4)
    kv, sql = cloudflare.datastore.round_trips, cloudflare.sql.round_trips
    with (
        kv.track() as kv_trips,
        sql.track() as sql_trips,
        pytest.raises(SyncError, match="nimbus_sync --repair"),
    ):
        pages(cloudflare).create(project_id="p", page_id="b", url="https://e.com")
    # bounded: 1 KV put + 4 attempts (the API may see fewer: a pooled connection the server
    # closed fails before the request reaches it, and counts as an attempt all the same)
    assert (kv_trips.count, sql_trips.count) == (1, 4)
    assert cloudflare_api.requests_seen() <= 5
    assert pages(cloudflare).get(project_id="p", page_id="b").get("url") == "https://e.com"
    assert verify(cloudflare, Page).missing == 1
    assert verify(cloudflare, Page, repair=True).repaired == 1
    assert verify(cloudflare, Page).drift == 0


def test_a_kv_outage_writes_nothing(
    cloudflare: Connection, cloudflare_api: LocalCloudflare
) -> None:
    cloudflare_api.inject_faults([{"status": 503}] * 4)
    with pytest.raises(Unavailable, match="gave up after 4 attempts"):
        pages(cloudflare).create(project_id="p", page_id="c", url="https://e.com")
    assert pages(cloudflare).get_or_none(project_id="p", page_id="c") is None
    assert cloudflare.sql.execute("SELECT count(*) AS n FROM webpage_meta")[0]["n"] == 0


def test_dropped_connections_are_a_clear_error() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    stop = threading.Event()

    def slam() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            client.close()  # the connection resets before any answer

    thread = threading.Thread(target=slam, daemon=True)
    thread.start()
    try:
        kv = CloudflareKVStore(
            "acct",
            "token",
            {"NIMBUS_PAGES": "ns"},
            base_url=f"http://127.0.0.1:{port}/client/v4",
            sleep=lambda _: None,
        )
        with pytest.raises(Unavailable, match="gave up after 4 attempts"):
            kv.get("NIMBUS_PAGES", "k")
        with pytest.raises(Unavailable, match="not idempotent, so not retried"):
            d1 = CloudflareD1Database(
                "acct",
                "token",
                "db",
                base_url=f"http://127.0.0.1:{port}/client/v4",
                sleep=lambda _: None,
            )
            d1.execute("UPDATE t SET n = n + 1")
        assert kv.round_trips.value == 4 and d1.round_trips.value == 1
    finally:
        stop.set()
        thread.join()
        listener.close()


def start_redis(port: int, directory) -> subprocess.Popen:
    process = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return process
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def test_a_redis_restart_mid_run(tmp_path) -> None:
    import shutil

    if shutil.which("redis-server") is None:
        from tests.support import require_service

        require_service("redis-server", "the binary is needed to restart a private Redis")
    port = free_port()
    server = start_redis(port, tmp_path)
    kv = RedisKVStore(f"redis://127.0.0.1:{port}/0", retries=1, socket_timeout=1)
    connection = Connection(Datastore(kv, routing=routing()), MemorySQLDatabase())
    create_tables(connection.sql, TEST_MODELS)
    saved = []
    try:
        for i in range(5):
            saved.append(
                pages(connection).create(project_id="p", page_id=f"before{i}", url="https://e.com")
            )
        server.terminate()
        server.wait(timeout=10)
        with pytest.raises(Unavailable, match="unavailable"):
            pages(connection).create(project_id="p", page_id="during", url="https://e.com")
        server = start_redis(port, tmp_path)  # same data directory: the append-only file
        for i in range(5):
            saved.append(
                pages(connection).create(project_id="p", page_id=f"after{i}", url="https://e.com")
            )
        for page in saved:
            assert pages(connection).get(page.kv_id).get("url") == "https://e.com"
        assert pages(connection).get_or_none(project_id="p", page_id="during") is None
        assert verify(connection, Page).drift == 0
    finally:
        server.terminate()
        server.wait(timeout=10)
        kv.close()
