from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from datastore import Datastore
from tests.cloudflare import local_api
from tests.support import (
    FACADE_BACKENDS,
    KV_BACKENDS,
    SQL_BACKENDS,
    Backend,
    make_datastore,
    make_kv,
    make_sql,
    needs_cloudflare,
    require_service,
)


@pytest.fixture(scope="session")
def cloudflare_api() -> Iterator[local_api.LocalCloudflare]:
    """The local Cloudflare REST API (Miniflare), started once per test session."""
    reason = local_api.unavailable_reason()
    if reason is not None:
        require_service("the local Cloudflare API", reason)
    server = local_api.start()
    yield server
    server.stop()


def _cloudflare_for(name: str, request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue("cloudflare_api") if needs_cloudflare(name) else None


@pytest.fixture(params=KV_BACKENDS)
def kv_backend(request: pytest.FixtureRequest, tmp_path) -> Iterator[Backend]:
    """Every KV backend, fresh and empty."""
    backend = make_kv(request.param, tmp_path, _cloudflare_for(request.param, request))
    yield backend
    backend.store.close()


@pytest.fixture
def kv(kv_backend: Backend):
    return kv_backend.store


@pytest.fixture(params=SQL_BACKENDS)
def sql_database(request: pytest.FixtureRequest, tmp_path):
    """Every SQLDatabase backend, fresh and empty."""
    database = make_sql(request.param, tmp_path, _cloudflare_for(request.param, request))
    yield database
    database.close()


@pytest.fixture(params=FACADE_BACKENDS)
def facade(request: pytest.FixtureRequest, tmp_path) -> Iterator[tuple[Datastore, Backend]]:
    """A Datastore on every adapter (KV on each KV backend, SQL tables on each SQL backend)."""
    datastore, backend = make_datastore(
        request.param, tmp_path, _cloudflare_for(request.param, request)
    )
    yield datastore, backend
    datastore.close()


@pytest.fixture
def ds(facade: tuple[Datastore, Backend]) -> Datastore:
    return facade[0]
