"""``KVStore.combine()`` where the store sends every request on its own: the gathered reads and
increments run one after the other, in the order they were gathered, when ``send()`` (or the
``result()`` of any of them) is called. The gateway sends them as one request instead."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .. import codec
from ..contract import Entry, KVStore
from ..errors import InvalidValue
from ..keys import fill_key_template
from ..pending import Pending

__all__ = ["SequentialCombined", "json_records"]

T = TypeVar("T")


def json_records(entries: dict[str, Entry]) -> list[dict[str, Any]]:
    """The JSON objects among the values read (other values name no key)."""
    records = []
    for entry in entries.values():
        try:
            value = codec.loads(entry.value)
        except InvalidValue:
            continue
        if isinstance(value, dict):
            records.append(value)
    return records


class SequentialCombined:
    """Gathered calls, made one by one on ``send()``."""

    def __init__(self, store: KVStore) -> None:
        self.store = store
        self._gathered: list[Pending[Any]] = []

    def _gather(self, call: Callable[[], T]) -> Pending[T]:
        earlier = list(self._gathered)

        def run() -> T:
            _settle(earlier)  # the calls gathered before this one run first, in order
            return call()

        pending = Pending(run)
        self._gathered.append(pending)
        return pending

    def get_entries(self, namespace: str, keys: Sequence[str]) -> Pending[dict[str, Entry]]:
        wanted = list(keys)
        return self._gather(lambda: self.store.get_entries(namespace, wanted))

    def get_entries_from(
        self, source: Pending[dict[str, Entry]], namespace: str, template: str
    ) -> Pending[dict[str, Entry]]:
        def read() -> dict[str, Entry]:
            keys = [fill_key_template(template, record) for record in json_records(source.result())]
            wanted = list(dict.fromkeys(key for key in keys if key is not None))
            return self.store.get_entries(namespace, wanted) if wanted else {}

        return self._gather(read)

    def incr(
        self, namespace: str, key: str, amount: int = 1, *, ttl: float | None = None
    ) -> Pending[int]:
        return self._gather(lambda: self.store.incr(namespace, key, amount, ttl=ttl))

    def send(self) -> None:
        _settle(self._gathered)


def _settle(pendings: Sequence[Pending[Any]]) -> None:
    for pending in pendings:
        if not pending.done():
            with contextlib.suppress(Exception):  # kept by the pending for its own result()
                pending.result()
