"""``Model.objects``: scoped access to a model's objects.

There is no unscoped manager by accident: ``Page.objects.auth(user_id)`` sees what that user
owns, ``Page.objects.system()`` everything. An object the scope may not see behaves exactly as
a missing one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from datastore.keys import composite_key

from . import sync
from .connection import Connection, get_connection
from .deletion import Collector
from .errors import DoesNotExist, ValidationError
from .query import Aggregate, Q, QuerySet
from .related import check_references
from .scope import Scope

if TYPE_CHECKING:
    from .instance import ModelBase

__all__ = ["Manager", "ScopedManager"]

M = TypeVar("M", bound="ModelBase")


class Manager(Generic[M]):
    """The entry point on every model class (``Model.objects``)."""

    def __init__(self, model: type[M]) -> None:
        self.model = model

    def auth(self, user_id: str, *, using: Connection | None = None) -> ScopedManager[M]:
        """Objects visible to ``user_id``."""
        if not isinstance(user_id, str) or not user_id:
            raise ValidationError({"user_id": ["a scope needs a user id"]})
        return ScopedManager(self.model, Scope(using or get_connection(), user_id))

    def system(self, *, using: Connection | None = None) -> ScopedManager[M]:
        """Every object, for admin and initialization code."""
        return ScopedManager(self.model, Scope(using or get_connection(), None))

    def bind(self, scope: Scope) -> ScopedManager[M]:
        return ScopedManager(self.model, scope)


class ScopedManager(Generic[M]):
    """A model's objects as seen by one scope."""

    def __init__(self, model: type[M], scope: Scope) -> None:
        self.model = model
        self.scope = scope
        self.meta = model._meta

    def kv_id(self, object_id: str | None = None, **key_fields: Any) -> str:
        """The KV id from ``object_id`` or from the key pattern's fields."""
        if object_id is not None and key_fields:
            raise TypeError("give an id or the key fields, not both")
        if object_id is not None:
            if len(self.meta.key_fields) == 1:
                return composite_key(str(object_id))
            return str(object_id)
        missing = [name for name in self.meta.key_fields if key_fields.get(name) in (None, "")]
        unknown = set(key_fields) - set(self.meta.key_fields)
        if missing or unknown:
            raise TypeError(
                f"{self.meta.name} objects are found by {', '.join(self.meta.key_fields)}"
            )
        return self.meta.kv_id(key_fields)

    def new(self, **values: Any) -> M:
        """An unsaved instance bound to this scope."""
        instance = self.model(**values)
        instance._scope = self.scope
        return instance

    def create(self, **values: Any) -> M:
        """Validate, store (KV, then metadata) and return a new object."""
        instance = self.new(**values)
        instance.save()
        return instance

    def bulk_create(self, objects: Iterable[Mapping[str, Any] | M]) -> list[M]:
        """Create many objects in as few round trips as the stores' batch limits allow."""
        instances = [
            self.new(**item) if isinstance(item, Mapping) else self._adopt(item) for item in objects
        ]
        for instance in instances:
            if not instance.is_new():
                raise ValidationError(f"{self.meta.name} {instance.pk!r} is already stored")
        check_references(instances, self.scope)
        sync.bulk_save(instances, self.scope)
        return instances

    def bulk_save(self, instances: Iterable[M]) -> list[M]:
        """Create the new and update the stored instances together, in bulk round trips."""
        adopted = [self._adopt(instance) for instance in instances]
        check_references(adopted, self.scope)
        sync.bulk_save(adopted, self.scope)
        return adopted

    def get_many(self, ids: Iterable[str], *, include_deleted: bool = False) -> dict[str, M]:
        """The visible objects among these KV ids, in one bulk read."""
        found = self.scope.store(self.meta).read_many(self.meta.kv_class, list(ids))
        instances = {
            kv_id: self.model._from_stored(stored.data, stored.version, self.scope)
            for kv_id, stored in found.items()
        }
        return {
            kv_id: instance  # type: ignore[misc]
            for kv_id, instance in instances.items()
            if include_deleted or instance._values.get("deleted_at") is None
        }

    def in_bulk(self, ids: Iterable[str], *, include_deleted: bool = False) -> dict[str, M]:
        """``{id: object}`` for the visible objects among ``ids`` (each as ``get`` takes it:
        the primary key, or the composite KV id), in one bulk KV read."""
        wanted = {self.kv_id(object_id): object_id for object_id in ids}
        found = self.get_many(list(wanted), include_deleted=include_deleted)
        return {wanted[kv_id]: instance for kv_id, instance in found.items()}

    def _adopt(self, instance: M) -> M:
        if not isinstance(instance, self.model):
            raise ValidationError(f"expected {self.model.__name__} instances or dicts")
        instance._scope = self.scope
        return instance

    def get_or_none(
        self, object_id: str | None = None, *, include_deleted: bool = False, **key_fields: Any
    ) -> M | None:
        """The object, or ``None`` if it is missing, deleted, or not visible to this scope."""
        kv_id = self.kv_id(object_id, **key_fields)
        stored = self.scope.store(self.meta).read(self.meta.kv_class, kv_id)
        if stored is None:
            return None
        instance = self.model._from_stored(stored.data, stored.version, self.scope)
        if instance._values.get("deleted_at") is not None:
            return instance if include_deleted else None  # type: ignore[return-value]
        self.scope.live.add((self.meta.name, kv_id))
        return instance  # type: ignore[return-value]

    def get(
        self, object_id: str | None = None, *, include_deleted: bool = False, **key_fields: Any
    ) -> M:
        """The object; ``DoesNotExist`` if it is missing, deleted or not visible (one KV read)."""
        instance = self.get_or_none(object_id, include_deleted=include_deleted, **key_fields)
        if instance is None:
            kv_id = self.kv_id(object_id, **key_fields)
            raise DoesNotExist(f"{self.meta.name} {kv_id!r} does not exist")
        return instance

    def exists(self, object_id: str | None = None, **key_fields: Any) -> bool:
        return self.get_or_none(object_id, **key_fields) is not None

    def delete(self, object_id: str | None = None, **key_fields: Any) -> bool:
        """Delete one object by id (soft where the model has soft delete; what references it
        follows its ``on_delete``); ``False`` if it is not visible. There is deliberately no
        ``delete()`` of everything: without an id this is a ``TypeError``."""
        instance = self.get_or_none(object_id, **key_fields)
        if instance is None:
            return False
        instance.delete()
        return True

    def delete_many(self, ids: Iterable[str], *, hard: bool = False) -> int:
        """Delete the visible objects among ``ids`` (each as ``get`` takes it), soft where the
        model has soft delete, removed for good with ``hard=True`` (soft-deleted ones
        included); what references them follows its ``on_delete``. Returns how many of
        them were deleted.

        One bulk KV read, then one KV write and one SQL batch per KV batch limit (see
        ``datamodel.deletion`` for the objects that reference them). ``DeleteConflict``
        names the objects that kept changing while this ran.
        """
        if isinstance(ids, str):
            raise TypeError("delete_many() takes a list of ids")
        found = self.in_bulk(ids, include_deleted=hard)
        if not found:
            return 0
        collector = Collector(self.scope, hard=hard)
        collector.collect(list(found.values()))
        wanted = {(self.meta.name, instance.kv_id) for instance in found.values()}
        collector.delete()
        return len(wanted & collector.deleted_keys)

    def query(self) -> QuerySet[M]:
        """A query over the metadata table (see ``datamodel.query``)."""
        return QuerySet(self.model, self.scope)

    def all(self) -> QuerySet[M]:
        """Every object in this scope, as Django's ``objects.all()`` (same as ``query()``)."""
        return self.query()

    # The query-set methods a manager offers: reads and the create-or-get writes. Never
    # update() or delete(): ``Page.objects.auth(u).delete()`` cannot mean "everything".

    def filter(self, *conditions: Q, **lookups: Any) -> QuerySet[M]:
        """``query().filter(status="done", created_at__gte=...)``."""
        return self.query().filter(*conditions, **lookups)

    def exclude(self, *conditions: Q, **lookups: Any) -> QuerySet[M]:
        return self.query().exclude(*conditions, **lookups)

    def order_by(self, *fields: str) -> QuerySet[M]:
        return self.query().order_by(*fields)

    def values(self, *fields: str) -> QuerySet[M]:
        return self.query().values(*fields)

    def values_list(self, *fields: str, flat: bool = False) -> QuerySet[M]:
        return self.query().values_list(*fields, flat=flat)

    def aggregate(self, **aggregates: Aggregate) -> dict[str, Any]:
        return self.query().aggregate(**aggregates)

    def first(self) -> Any:
        return self.query().first()

    def last(self) -> Any:
        return self.query().last()

    def count(self) -> int:
        return self.query().count()

    def get_or_create(
        self, defaults: dict[str, Any] | None = None, **lookups: Any
    ) -> tuple[M, bool]:
        """See ``QuerySet.get_or_create``."""
        return self.query().get_or_create(defaults, **lookups)

    def update_or_create(
        self, defaults: dict[str, Any] | None = None, **lookups: Any
    ) -> tuple[M, bool]:
        """See ``QuerySet.update_or_create``."""
        return self.query().update_or_create(defaults, **lookups)
