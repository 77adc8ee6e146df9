from __future__ import annotations

from collections.abc import Iterator

import pytest

from datamodel import Connection, create_tables, registry
from datastore import Datastore, Routing
from datastore.routing import DEFAULT_CLASS_NAMESPACES
from tests.datamodel.models import TEST_MODELS, WEBHOOKS, Page
from tests.support import make_kv, make_sql, needs_cloudflare

# KV backend for objects, SQL backend for metadata (the SQL adapter keeps both in SQL).
MODEL_BACKENDS = ["memory", "sqlite", "redis", "cloudflare", "gateway", "sql-adapter"]


def routing() -> Routing:
    return Routing(
        classes={**DEFAULT_CLASS_NAMESPACES, **registry.routes()}, lists=registry.list_routes()
    )


def make_connection(name: str, tmp_path, request: pytest.FixtureRequest) -> Connection:
    """Empty stores for the models: KV (or the SQL adapter) for objects, SQL for metadata."""
    cloudflare = request.getfixturevalue("cloudflare_api") if needs_cloudflare(name) else None
    if name == "sql-adapter":
        sql = make_sql("sqlite", tmp_path)
        datastore = Datastore(sql=sql, adapter="sql", routing=routing())
    else:
        backend = make_kv(name, tmp_path, cloudflare)
        sql_name = {"cloudflare": "d1", "gateway": "gateway"}.get(name, "sqlite")
        sql = make_sql(sql_name, tmp_path, cloudflare)
        datastore = Datastore(backend.store, sql=sql, routing=routing())
    WEBHOOKS.clear()
    return Connection(datastore, sql)


@pytest.fixture(params=MODEL_BACKENDS)
def bare_connection(request: pytest.FixtureRequest, tmp_path) -> Iterator[Connection]:
    """Every backend, with no tables created."""
    connection = make_connection(request.param, tmp_path, request)
    yield connection
    connection.datastore.close()
    connection.sql.close()


@pytest.fixture
def connection(bare_connection: Connection) -> Connection:
    """Every backend, with the test models' tables (and the SQL adapter's) created."""
    if bare_connection.datastore.adapter.name == "sql":
        bare_connection.datastore.adapter.create_tables()  # type: ignore[attr-defined]
    create_tables(bare_connection.sql, TEST_MODELS)
    return bare_connection


@pytest.fixture
def memory_connection() -> Iterator[Connection]:
    from datastore.backends.memory import MemoryKVStore, MemorySQLDatabase

    sql = MemorySQLDatabase()
    datastore = Datastore(MemoryKVStore(), sql=sql, routing=routing())
    create_tables(sql, TEST_MODELS)
    WEBHOOKS.clear()
    yield Connection(datastore, sql)
    datastore.close()


@pytest.fixture
def pages(connection: Connection):
    """Twelve pages of user u1 over two projects, on every backend."""
    scoped = Page.objects.auth("u1", using=connection)
    scoped.bulk_create(
        [
            {
                "page_id": f"page_{i:02d}",
                "project_id": "proj_a" if i < 8 else "proj_b",
                "url": f"https://example.com/{i}",
                "title": f"Title {i}" if i % 4 else None,
                "status": ["pending", "processing", "completed", "failed"][i % 4],
                "priority": i % 5,
                "score": i / 2,
                "archived": i % 3 == 0,
                "tags": ["seo", "blog"] if i % 2 else ["shop"],
                "last_processed": f"2024-09-{i + 1:02d}T10:00:00Z",
            }
            for i in range(12)
        ]
    )
    return scoped
