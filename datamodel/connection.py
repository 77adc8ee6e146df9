"""Where models read and write: a ``Datastore`` (objects) and a ``SQLDatabase`` (metadata).

The Django app installs a provider at startup (``nimbus.conf``); tests and scripts can pass a
``Connection`` explicitly with ``Model.objects.using(connection)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from datastore import Datastore, SQLDatabase

__all__ = ["Connection", "get_connection", "set_provider"]


@dataclass(frozen=True)
class Connection:
    datastore: Datastore
    sql: SQLDatabase


_provider: Callable[[], Connection] | None = None


def set_provider(provider: Callable[[], Connection] | None) -> None:
    """Install the function that returns the default connection (``None`` removes it)."""
    global _provider
    _provider = provider


def get_connection() -> Connection:
    if _provider is None:
        raise RuntimeError(
            "no datamodel connection: call datamodel.connection.set_provider(...) or use "
            "Model.objects.using(Connection(datastore, sql))"
        )
    return _provider()
