from __future__ import annotations

from collections.abc import Iterator

import pytest

from nimbus import conf, key_usage

MEMORY_NIMBUS = {
    "KV": {"BACKEND": "datastore.backends.memory.MemoryKVStore"},
    "D1": {"BACKEND": "datastore.backends.memory.MemorySQLDatabase"},
    "ADAPTER": "kv",
}


@pytest.fixture(autouse=True)
def memory_datastore(settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Django tests run on fresh in-memory backends, whatever the environment says, and
    start with no API-key usage recorded (nor flushed into them from an earlier test)."""
    for name in (
        conf.KV_URL_ENV,
        conf.D1_URL_ENV,
        conf.ADAPTER_ENV,
        conf.TOKEN_ENV,
        conf.KV_NAMESPACES_ENV,
    ):
        monkeypatch.delenv(name, raising=False)
    settings.NIMBUS = MEMORY_NIMBUS
    key_usage.reset()
    yield
    key_usage.reset()
    conf.reset()


@pytest.fixture
def domain(memory_datastore: None) -> None:
    """The domain models' metadata tables on the in-memory stores."""
    from datamodel import initialize
    from nimbus.models import DOMAIN_MODELS

    initialize(conf.get_connection(), DOMAIN_MODELS, seeds=False)
