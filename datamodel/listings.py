"""Listings: a KV list of a model's ids per owner, kept in step by the save path.

::

    class Project(DataModel):
        ...

        class Meta:
            listings = [Listing("projects", pointer="user_id", stored_with="USER")]

keeps ``projects:{user_id}`` (a JSON array of project ids, in the USER class's namespace) for
code that reads KV directly, as a Worker does: one read answers "which projects has this
user" without SQL. A live object is in the list of its ``pointer`` value; a create or a
restore adds it, a delete (soft or hard) removes it. The list is changed with
compare-and-set after the object is written (a hook of the model, so bulk saves and cascades
keep it too); a process that dies in between, or a list write that fails (logged), leaves the
list behind the table until ``verify_listings`` (``manage.py nimbus_sync``) finds it and, with
``repair``, rewrites it from the metadata rows. Each change costs one KV read and one write.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from datastore.keys import validate_class_name, validate_list_name
from datastore.sqlbuild import quote_identifier

from .errors import DeclarationError

if TYPE_CHECKING:
    from datastore import ScopedDatastore

    from .connection import Connection

# A listing sits below the model class (whose options hold it), so models are typed loosely.
DataModel = Any

__all__ = ["Listing", "ListingReport", "verify_listings"]

logger = logging.getLogger("datamodel.listings")

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
SAMPLE = 20


@dataclass(frozen=True)
class Listing:
    """``{name}:{pointer value}`` lists the ``item`` of every live object with that pointer.

    ``item`` is a template over the object's fields (``"{pk}"``, the default, is the primary
    key; ``"sha256:{key_hash}"``); ``stored_with`` names the KV class whose namespace holds the
    lists (default: the model's own). The pointer and the item's fields must be sync fields,
    so the lists can be checked against the metadata table.
    """

    name: str
    pointer: str = "user_id"
    item: str = "{pk}"
    stored_with: str | None = None

    def placeholders(self, pk_name: str) -> list[str]:
        return [pk_name if name == "pk" else name for name in _PLACEHOLDER.findall(self.item)]

    def check(self, model: str, sync_fields: list[str], pk_name: str) -> None:
        """Refuse a declaration that cannot be kept or checked (``DeclarationError``)."""
        try:
            validate_list_name(self.name)
            if self.stored_with is not None:
                validate_class_name(self.stored_with)
        except ValueError as exc:
            raise DeclarationError(f"{model}: Listing {self.name!r}: {exc}") from None
        for name in [self.pointer, *self.placeholders(pk_name)]:
            if name not in sync_fields:
                raise DeclarationError(
                    f"{model}: Listing {self.name!r} uses {name!r}, which is not a sync field"
                )
        if not self.placeholders(pk_name):
            raise DeclarationError(f"{model}: Listing {self.name!r}: item names no field")

    def pointer_of(self, values: Mapping[str, Any]) -> str | None:
        value = values.get(self.pointer)
        return None if value is None else str(value)

    def item_of(self, values: Mapping[str, Any], pk_name: str) -> str:
        return _PLACEHOLDER.sub(
            lambda match: str(values[pk_name if match[1] == "pk" else match[1]]), self.item
        )

    # -- kept by the save path ------------------------------------------------------------

    def connect(self, model: type[DataModel]) -> None:
        """Keep this listing through ``model``'s hooks (every write path runs them)."""
        model.hooks.connect("after_create", lambda instance: self._follow(instance))
        model.hooks.connect("after_update", self._after_update)
        model.hooks.connect("after_delete", lambda instance: self._change(instance, add=False))
        model.hooks.connect("after_restore", lambda instance: self._change(instance, add=True))

    def _after_update(self, instance: DataModel, changes: Mapping[str, Any]) -> None:
        """Only a change of what names the list or the item moves anything (no list read on
        every save)."""
        names = {self.pointer, "deleted_at", *self.placeholders(instance._meta.pk_name)}
        if names & set(changes):
            self._follow(instance)

    def _follow(self, instance: DataModel) -> None:
        self._change(instance, add=instance.get("deleted_at") is None)

    def _change(self, instance: DataModel, *, add: bool) -> None:
        scope = instance.scope
        if scope is None:
            return
        values = instance._values
        pointer = self.pointer_of(values)
        if pointer is None:
            return
        item = self.item_of(values, instance._meta.pk_name)
        store = _list_store(scope.connection, instance._meta, values)
        if add:
            store.list_add(self.name, pointer, item)
        else:
            store.list_remove(self.name, pointer, item)


def _list_store(connection: Connection, meta: Any, values: Mapping[str, Any]) -> ScopedDatastore:
    """As the object's owner (the list is theirs to read), or the system for an unowned one."""
    owner = values.get("user_id") if meta.user_tracking else None
    datastore = connection.datastore
    return datastore.auth(owner) if owner else datastore.system()


@dataclass
class ListingReport:
    """What ``verify_listings`` found for one listing: lists that differ from the table."""

    model: str
    listing: str
    pointer: str = "user_id"
    checked: int = 0
    drifted: int = 0
    repaired: int = 0
    examples: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "listing": self.listing,
            "pointer": self.pointer,
            "checked": self.checked,
            "drifted": self.drifted,
            "repaired": self.repaired,
            "examples": self.examples,
        }


def verify_listings(
    connection: Connection, model: type[DataModel], *, repair: bool = False, batch_size: int = 500
) -> list[ListingReport]:
    """Compare each listing of ``model`` with its metadata rows (the live objects per pointer
    value, and every pointer value a row has, deleted ones included, so a list holding only
    deleted objects is found); with ``repair``, rewrite each list that differs. Run it after
    the rows are repaired from KV (``verify``): the rows are what it trusts."""
    meta = model._meta
    reports = []
    for listing in getattr(meta, "listings", []):
        report = ListingReport(meta.name, listing.name, listing.pointer)
        for pointer, owner, items in _expected(connection, model, listing, batch_size):
            report.checked += 1
            store = _list_store(connection, meta, {"user_id": owner})
            stored = connection.datastore.system().list_items(listing.name, pointer)
            if sorted(stored) == sorted(items):
                continue
            report.drifted += 1
            if len(report.examples) < SAMPLE:
                report.examples.append(f"{listing.name}:{pointer}")
            if repair:
                _rewrite(store, listing.name, pointer, stored, items)
                report.repaired += 1
        reports.append(report)
    return reports


def _expected(
    connection: Connection, model: type[DataModel], listing: Listing, batch_size: int
) -> Iterator[tuple[str, str | None, list[str]]]:
    """(pointer value, its owner, the items of its live objects) for every pointer value in
    the table, streamed in keyset order of (pointer, primary key)."""
    meta = model._meta
    columns = list(
        dict.fromkeys(
            [listing.pointer, meta.pk_name, *listing.placeholders(meta.pk_name), "deleted_at"]
        )
    )
    if meta.user_tracking:
        columns.append("user_id")
    columns = [column for column in dict.fromkeys(columns) if column in meta.sync_fields]
    table = quote_identifier(meta.table)
    pointer_column, pk = quote_identifier(listing.pointer), quote_identifier(meta.pk_name)
    selected = ", ".join(quote_identifier(column) for column in columns)
    current: str | None = None
    owner: str | None = None
    items: list[str] = []
    last: tuple[Any, Any] | None = None
    while True:
        conditions = [f"{pointer_column} IS NOT NULL"]
        if last is not None:
            conditions.append(f"({pointer_column}, {pk}) > (?, ?)")
        rows = connection.sql.execute(
            f"SELECT {selected} FROM {table} WHERE {' AND '.join(conditions)} "
            f"ORDER BY {pointer_column}, {pk} LIMIT ?",
            [*(last if last is not None else ()), batch_size],
        )
        for row in rows:
            pointer = str(row[listing.pointer])
            if pointer != current:
                if current is not None:
                    yield current, owner, items
                current, owner, items = pointer, row.get("user_id"), []
            if row.get("deleted_at") is None:
                items.append(listing.item_of(row, meta.pk_name))
        if len(rows) < batch_size:
            break
        last = (rows[-1][listing.pointer], rows[-1][meta.pk_name])
    if current is not None:
        yield current, owner, items


def _rewrite(
    store: ScopedDatastore, name: str, pointer: str, stored: list[str], items: list[str]
) -> None:
    """Make the list hold ``items``: remove what should not be there, add what is missing."""
    wanted = set(items)
    for item in stored:
        if item not in wanted:
            store.list_remove(name, pointer, item)
    present = set(stored)
    for item in items:
        if item not in present:
            store.list_add(name, pointer, item)
