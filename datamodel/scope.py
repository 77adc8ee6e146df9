"""Where a model reads and writes, and as whom: a ``Connection`` and a user id (or system)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Protocol

from datastore import ScopedDatastore

from .connection import Connection

__all__ = ["Scope"]


class _AuthOption(Protocol):
    """What the scope reads of a model's options (``Options`` sits above this module)."""

    @property
    def auth(self) -> bool: ...


@dataclass(frozen=True)
class Scope:
    """Who is acting (a user id, or ``None`` for system access) and on which stores.

    ``live`` holds the ``(model name, KV id)`` of the objects read live by id through this scope
    (``get``/``get_or_none``), until it deletes them: a reference to one of them is not read
    again to check it. A scope lives as long as one unit of work (an API request): a parent
    read at its start stands for the children it creates, as a check made a moment later
    would (neither holds the parent against a concurrent delete)."""

    connection: Connection
    user_id: str | None
    live: set[tuple[str, str]] = field(default_factory=set, compare=False, repr=False)

    def store(self, meta: _AuthOption) -> ScopedDatastore:
        """The KV view for a model: scoped by ``_auth`` unless the model has no auth."""
        if meta.auth and self.user_id is not None:
            return self._user_store
        return self._system_store

    @functools.cached_property
    def _user_store(self) -> ScopedDatastore:
        assert self.user_id is not None
        return self.connection.datastore.auth(self.user_id)

    @functools.cached_property
    def _system_store(self) -> ScopedDatastore:
        return self.connection.datastore.system()
