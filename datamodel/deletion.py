"""Deleting objects that others reference: Django's ``on_delete`` handlers and a ``Collector``.

::

    class Task(DataModel):
        workspace = fields.Reference("WORKSPACE", on_delete=CASCADE, required=True)

    workspace.delete()      # its tasks are soft-deleted with it, with the same deleted_at
    workspace.restore()     # and come back with it

A delete has two phases, as in Django's ``django.db.models.deletion``:

1. **Plan** (``Collector.collect``). From the objects to delete, find the objects that
   reference them (``related.references_to``): one metadata query per reference field and
   per 500 parents, with system access (a reference is integrity, whoever owns the child).
   Each field's ``on_delete`` handler gets those children as a lazy query set:
   ``CASCADE`` collects them in turn, ``SET_NULL`` plans an update, ``PROTECT`` raises
   ``ProtectedError``, ``DO_NOTHING`` is not even queried. Only reads happen, so a
   ``ProtectedError`` leaves everything as it was.
2. **Perform** (``Collector.delete``). Every ``before_delete`` hook runs first (any may
   refuse; nothing is written yet). Then the ``SET_NULL`` updates go through the save path
   (``sync.bulk_save``: ``before_update``/``after_update`` hooks, versions), then the
   deletions, the objects found last (children) first, so a live object never points at a
   deleted one: each model's objects in chunks of the KV store's batch limit, one KV
   compare-and-set batch and one SQL batch per chunk for a soft delete, one KV bulk delete and
   one SQL delete per chunk for a hard one; ``after_delete`` hooks after each chunk.

**Soft or hard.** A delete is soft where the model has soft delete, unless asked to be hard.
A cascade deletes children the way their parent goes: soft if the parent is soft-deleted and
the child's model soft-deletes, hard otherwise. Every object of one delete gets the same
``deleted_at``. A soft-deleted parent's handlers see its live children; a hard-deleted
parent's see every child, soft-deleted ones included, since none may be left pointing at
nothing (so ``PROTECT`` refuses a hard delete while even a soft-deleted child remains).
``SET_NULL`` clears soft-deleted children too.

**Restore** (``restore_objects``) brings back the objects that the delete of a parent
cascaded to: the children soft-deleted by that same delete (each soft-deleted object keeps
the delete's id as ``_deletion`` beside its fields: two deletes may share a ``deleted_at``),
not those deleted before on their own, nor those hard-deleted because their model has no soft
delete, nor ``SET_NULL`` references, which stay cleared. A restored object must not point at a
deleted one: restoring a child whose parent is deleted is a ``ValidationError``; a cascaded
child with another reference to a deleted object stays deleted.

**Conflicts.** An object that changed between its read and the write is read afresh and
tried once more; if it changed again it is left as it was, as are the objects it references
in the same delete, and ``DeleteConflict`` reports them (``failed_ids``) once the rest is
done, with the count of what was deleted.

**Cost.** Finding children: one SQL round trip per reference field pointing at a deleted
object's model (per 500 parents, per 1000 children), and one bulk KV read per 1000 children
that ``CASCADE`` or ``SET_NULL`` act on (none when nothing is found); ``DO_NOTHING`` costs
nothing. Writing: two round trips (KV, SQL) per model per chunk. So soft-deleting a parent
with N children that nothing else references costs 2 KV + 2 SQL round trips to write, plus 1
SQL (and 1 KV read if N > 0) per reference to the parent's model and 1 SQL per reference to
the children's; an object of a model no reference points at costs what its save costs.

**Limits.** There is no transaction across KV and SQL or across chunks: a child created
under a parent while that parent is being deleted can be missed (the check a save makes of its
references narrows that window), and a failure midway leaves the children already deleted and
the parents not (never the reverse). ``nimbus_sync --repair`` rebuilds metadata as usual.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from datastore import Conflict

from . import ids, sync
from .clock import now_iso
from .errors import DeleteConflict, ProtectedError, ValidationError
from .related import check_references, dead_references, references_to
from .scope import Scope

if TYPE_CHECKING:
    from typing import Self

    from .fields import Reference
    from .instance import ModelBase

__all__ = [
    "CASCADE",
    "DO_NOTHING",
    "PROTECT",
    "SET_NULL",
    "Children",
    "Collector",
    "restore_objects",
]

logger = logging.getLogger("datamodel.deletion")

PARENTS_PER_QUERY = 500  # parent ids per children query (one bound JSON parameter)
CHILDREN_PER_READ = 1000  # children per metadata select and bulk KV read

T = TypeVar("T")
Key = tuple[str, str]  # (model name, KV id)


class Children(Protocol):
    """What a handler gets: the query set of the objects referencing the deleted ones
    (``datamodel.query.QuerySet``, which sits above this module)."""

    model: Any
    meta: Any
    scope: Scope

    def include_deleted(self) -> Self: ...
    def filter(self, *conditions: Any, **lookups: Any) -> Self: ...
    def values(self, *fields: str) -> Self: ...
    def with_data(self) -> Self: ...
    def count(self) -> int: ...
    def iterator(self, batch_size: int = ...) -> Iterator[Any]: ...
    def __getitem__(self, key: Any) -> Any: ...


# -- on_delete handlers ------------------------------------------------------------------


def CASCADE(collector: Collector, field: Reference, children: Children) -> None:
    """Delete the children with their parent (and what references them, recursively)."""
    collector.collect(children, source=field)


def PROTECT(collector: Collector, field: Reference, children: Children) -> None:
    """Refuse the delete while children exist: ``ProtectedError`` naming the parent and a
    few of them, raised while planning, before anything is written."""
    meta = children.meta
    columns = list(dict.fromkeys([field.name, *meta.key_fields]))
    rows = list(children.values(*columns)[:4])
    if not rows:
        return
    parent = rows[0][field.name]
    ids = [meta.kv_id(row) for row in rows if row[field.name] == parent][:3]
    count = children.filter(**{field.name: parent}).count()
    if collector.scope.user_id is not None:  # name only the children this user may see
        visible = collector.scope.store(meta).read_many(meta.kv_class, ids)
        ids = [kv_id for kv_id in ids if kv_id in visible]
    target = field.related_model._meta.name
    more = f" and {count - len(ids)} more" if count > len(ids) else ""
    note = (
        " (soft-deleted ones count: a hard delete would leave them pointing at nothing)"
        if collector.hard_parents
        else ""
    )
    raise ProtectedError(
        f"cannot delete {target} {parent!r}: it is referenced through {meta.name}."
        f"{field.name} (on_delete=PROTECT) by {count} {meta.name} object(s)"
        f"{': ' + ', '.join(map(repr, ids)) if ids else ''}{more}{note}",
        model=target,
        object_id=parent,
        field=f"{meta.name}.{field.name}",
        protected_ids=ids,
        count=count,
    )


def SET_NULL(collector: Collector, field: Reference, children: Children) -> None:
    """Set the reference to ``None`` on every child, soft-deleted ones included, through the
    save path (hooks, versions). The field must not be required."""
    collector.add_field_update(field, None, children.include_deleted())


SET_NULL.sets_null = True  # type: ignore[attr-defined]  # checked by Reference at declaration


def DO_NOTHING(collector: Collector, field: Reference, children: Children) -> None:
    """Leave the children pointing at the deleted object (they are not even queried)."""


# -- planning ------------------------------------------------------------------------------


@dataclass
class _Batch:
    """Objects of one model deleted the same way, found together."""

    model: type[Any]
    hard: bool
    instances: list[ModelBase]
    # The references they were found through (None: the objects asked for).
    sources: list[Reference | None] = dataclasses.field(default_factory=list)


@dataclass
class _Update:
    field: Reference
    value: Any
    model: type[Any]
    instances: list[ModelBase] = dataclasses.field(default_factory=list)


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _key(instance: ModelBase) -> Key:
    return instance._meta.name, instance.kv_id


class Collector:
    """Plans a delete (``collect``), then performs it (``delete``); see the module docstring.

    ``scope`` is who deletes: the objects given to ``collect`` were read through it. Their
    children are found and written with system access. ``hard=True`` removes the objects
    instead of soft-deleting them.
    """

    def __init__(self, scope: Scope, *, hard: bool = False) -> None:
        self.scope = scope
        self.hard = hard
        self.stamp = now_iso()  # the deleted_at of every object this delete soft-deletes
        self.deletion = ids.uuid4()  # and their _deletion: this delete, whatever the stamp
        self.system = Scope(scope.connection, None)
        self.batches: list[_Batch] = []
        self.updates: list[_Update] = []
        self.hard_parents = hard  # whether the parents a handler is called for go for good
        self.deleted_keys: set[Key] = set()  # (model name, KV id) of what delete() deleted
        self._planned: dict[Key, _Batch] = {}
        self._known: dict[Key, ModelBase] = {}  # one instance per object, whoever found it
        self._queue: deque[_Batch] = deque()
        self._collecting = False

    # -- planning ------------------------------------------------------------------------

    def _instances(self, objects: Iterable[ModelBase] | Children) -> list[ModelBase]:
        """The objects as instances; an object already known to this delete is the same
        instance. A query set's are found by their metadata rows (one SQL round trip per
        1000) and those not known yet read in one bulk KV read per 1000."""
        if not hasattr(objects, "with_data"):
            return [self._known.setdefault(_key(i), i) for i in objects]  # type: ignore[union-attr]
        children: Children = objects  # type: ignore[assignment]
        meta = children.meta
        instances = []
        rows = children.values(*meta.key_fields).iterator(CHILDREN_PER_READ)
        for chunk in _batched(rows, CHILDREN_PER_READ):
            keys = [(meta.name, meta.kv_id(row)) for row in chunk]
            unknown = [key[1] for key in keys if key not in self._known]
            if unknown:
                found = children.scope.store(meta).read_many(meta.kv_class, unknown)
                for kv_id, stored in found.items():
                    instance = children.model._from_stored(
                        stored.data, stored.version, children.scope
                    )
                    self._known[(meta.name, kv_id)] = instance
            for key in keys:
                instance = self._known.get(key)
                if instance is None:
                    logger.warning("%s %s has a metadata row but no KV object", *key)
                else:
                    instances.append(instance)
        return instances

    def collect(
        self, objects: Iterable[ModelBase] | Children, *, source: Reference | None = None
    ) -> None:
        """Plan the delete of ``objects`` (instances, or a query set of them) and of what
        depends on them. Given a ``source`` (the reference a handler found them through)
        they are deleted the way their parents are; else as the collector was asked."""
        parents_hard = self.hard if source is None else self.hard_parents
        new: dict[tuple[type[Any], bool], list[ModelBase]] = {}
        for instance in self._instances(objects):
            model = type(instance)
            if instance.is_new():
                raise ValidationError(f"this {model._meta.name} was never saved")
            hard = parents_hard or not model._meta.soft_delete
            key = _key(instance)
            planned = self._planned.get(key)
            if planned is not None:
                if planned.hard or not hard:
                    continue  # planned already, at least this way
                planned.instances.remove(instance)  # to be removed for good after all
            elif not hard and instance._values.get("deleted_at") is not None:
                continue  # soft-deleted already
            new.setdefault((model, hard), []).append(instance)
        for (model, hard), instances in new.items():
            batch = _Batch(model, hard, instances, [source])
            for instance in instances:
                self._planned[_key(instance)] = batch
            self.batches.append(batch)
            self._queue.append(batch)
        if self._collecting:
            return
        self._collecting = True
        try:
            while self._queue:
                self._collect_related(self._queue.popleft())
        finally:
            self._collecting = False

    def _collect_related(self, batch: _Batch) -> None:
        """Hand the children of a batch's objects to each reference's ``on_delete``."""
        ids = [instance.kv_id for instance in batch.instances]
        if not ids:
            return
        for child, reference in references_to(batch.model):
            if reference.on_delete is DO_NOTHING:
                continue
            for chunk in _chunks(ids, PARENTS_PER_QUERY):
                children = (
                    child.objects.bind(self.system)
                    .query()
                    .filter(**{f"{reference.name}__in": list(chunk)})
                )
                if batch.hard:
                    children = children.include_deleted()
                self.hard_parents = batch.hard
                reference.on_delete(self, reference, children)

    def add_field_update(
        self, field: Reference, value: Any, objects: Iterable[ModelBase] | Children
    ) -> None:
        """Plan setting ``field`` to ``value`` on ``objects`` through the save path."""
        instances = self._instances(objects)
        if instances:
            self.updates.append(_Update(field, value, type(instances[0]), instances))

    # -- performing ----------------------------------------------------------------------

    def delete(self) -> tuple[int, dict[str, int]]:
        """Perform the plan: ``(objects deleted, {model name: count})``, as Django's.

        ``DeleteConflict`` if some objects kept changing (see the module docstring);
        ``Rejected`` (or whatever a ``before_delete`` hook raises) before anything is
        written.
        """
        for batch in self.batches:
            for instance in batch.instances:
                instance.hooks.run_before("before_delete", instance)
        # what is deleted no longer stands as a live parent in the scopes that read it
        self.scope.live.difference_update(self._planned)
        for batch in self.batches:
            for instance in batch.instances:
                if instance.scope is not None:
                    instance.scope.live.discard(_key(instance))
        run = _Run(self.scope, self._planned)
        for update in self.updates:
            instances = [
                i
                for i in update.instances
                if not getattr(self._planned.get(_key(i)), "hard", False)
            ]
            self._update(run, update, instances)
        for batch in self._in_write_order():
            run.perform(
                batch.model,
                batch.instances,
                write=self._deleter(batch.hard),
                prepare=lambda instance: instance.hooks.run_before("before_delete", instance),
                applies=self._still_applies(batch),
                after=lambda instance: instance.hooks.run_after("after_delete", instance),
            )
        self.deleted_keys = run.done_keys
        run.finish("deleted")
        return sum(run.done.values()), dict(run.done)

    def _in_write_order(self) -> list[_Batch]:
        """Children before the objects they reference: the batches in reverse order of
        discovery, neighbours of one model and one way merged."""
        merged: list[_Batch] = []
        for batch in reversed(self.batches):
            if not batch.instances:
                continue
            last = merged[-1] if merged else None
            if last is not None and last.model is batch.model and last.hard == batch.hard:
                merged[-1] = _Batch(
                    last.model,
                    last.hard,
                    [*last.instances, *batch.instances],
                    [*last.sources, *batch.sources],
                )
            else:
                merged.append(batch)
        return merged

    def _deleter(self, hard: bool) -> Callable[[Sequence[ModelBase]], None]:
        if hard:
            return lambda chunk: sync.hard_delete_many(chunk, self.system)
        return lambda chunk: sync.soft_delete_many(chunk, self.system, self.stamp, self.deletion)

    def _still_applies(self, batch: _Batch) -> Callable[[ModelBase], bool]:
        """Whether an object read afresh still belongs in the delete: it is there, not
        soft-deleted (for a soft delete), and still references an object being deleted (if
        it was found through a reference)."""
        sources = batch.sources

        def applies(instance: ModelBase) -> bool:
            if not batch.hard and instance._values.get("deleted_at") is not None:
                return False
            if None in sources:
                return True
            return any(
                (source.related_model._meta.name, instance._values.get(source.name))
                in self._planned
                for source in sources
                if source is not None
            )

        return applies

    def _update(self, run: _Run, update: _Update, instances: list[ModelBase]) -> None:
        """``SET_NULL``'s update through the save path, for the children that still point at
        an object being deleted."""
        target = update.field.related_model._meta.name
        name = update.field.name

        def applies(instance: ModelBase) -> bool:
            return (target, instance._values.get(name)) in self._planned

        def prepare(instance: ModelBase) -> None:
            instance.set(name, update.value)

        for instance in instances:
            prepare(instance)
        run.perform(
            update.model,
            instances,
            write=lambda chunk: sync.bulk_save(chunk, self.system),
            prepare=prepare,
            applies=applies,
            after=None,
            counted=False,
        )


class _Run:
    """Writes chunks of planned objects, retrying an object that changed once from a fresh
    read, and keeps what was done and what was left (with what depends on it)."""

    def __init__(self, scope: Scope, planned: dict[Key, Any]) -> None:
        self.scope = scope
        self.planned = planned
        self.done: dict[str, int] = {}
        self.done_keys: set[Key] = set()
        self.failed: dict[str, list[str]] = {}
        self.blocked: set[Key] = set()  # planned objects kept because of a failure

    def perform(
        self,
        model: type[Any],
        instances: Sequence[ModelBase],
        *,
        write: Callable[[Sequence[ModelBase]], None],
        prepare: Callable[[ModelBase], None],
        applies: Callable[[ModelBase], bool],
        after: Callable[[ModelBase], None] | None,
        counted: bool = True,
    ) -> None:
        size = sync.write_batch_size(self.scope, model._meta)
        ready = []
        for instance in instances:
            if _key(instance) in self.blocked:
                self.fail(instance)
            else:
                ready.append(instance)
        for chunk in _chunks(ready, size):
            written = self._write_chunk(list(chunk), write, prepare, applies)
            name = model._meta.name
            if counted and written:
                self.done[name] = self.done.get(name, 0) + len(written)
                self.done_keys.update(_key(instance) for instance in written)
            if after is not None:
                for instance in written:
                    after(instance)

    def _write_chunk(
        self,
        pending: list[ModelBase],
        write: Callable[[Sequence[ModelBase]], None],
        prepare: Callable[[ModelBase], None],
        applies: Callable[[ModelBase], bool],
    ) -> list[ModelBase]:
        retried: set[str] = set()
        while pending:
            try:
                write(pending)
            except Conflict as exc:
                conflicted = _conflicting(pending, exc)
                for instance in pending:
                    if instance.kv_id in conflicted and instance.kv_id in retried:
                        self.fail(instance)
                again = [i for i in pending if i.kv_id in conflicted and i.kv_id not in retried]
                retried.update(instance.kv_id for instance in again)
                rest = [i for i in pending if i.kv_id not in conflicted]
                pending = rest + self._refresh(again, prepare, applies)
                continue
            return pending
        return []

    def _refresh(
        self,
        instances: list[ModelBase],
        prepare: Callable[[ModelBase], None],
        applies: Callable[[ModelBase], bool],
    ) -> list[ModelBase]:
        """The instances read afresh (in place) that still belong in the run, prepared again."""
        if not instances:
            return []
        meta = instances[0]._meta
        by_scope: dict[int, tuple[Scope, list[ModelBase]]] = {}
        for instance in instances:
            scope = instance.scope or self.scope
            by_scope.setdefault(id(scope), (scope, []))[1].append(instance)
        fresh: list[ModelBase] = []
        for scope, group in by_scope.values():
            found = scope.store(meta).read_many(meta.kv_class, [i.kv_id for i in group])
            for instance in group:
                stored = found.get(instance.kv_id)
                if stored is None:
                    continue  # gone meanwhile: nothing left to do
                loaded = type(instance)._from_stored(stored.data, stored.version, scope)
                instance._values, instance._extra = loaded._values, loaded._extra
                instance._state = loaded._state
                if applies(instance):
                    prepare(instance)
                    fresh.append(instance)
        return fresh

    def fail(self, instance: ModelBase) -> None:
        """Leave ``instance`` as it is, and keep the planned objects it references too."""
        name, kv_id = _key(instance)
        self.failed.setdefault(name, []).append(kv_id)
        for reference in instance._meta.references:
            value = instance.saved_value(reference.name)
            target = (reference.related_model._meta.name, value)
            if value is not None and target in self.planned:
                self.blocked.add(target)

    def finish(self, verb: str) -> None:
        """``DeleteConflict`` if anything was left."""
        if not self.failed:
            return
        listed = "; ".join(f"{name} {', '.join(ids)}" for name, ids in self.failed.items())
        raise DeleteConflict(
            f"{sum(self.done.values())} objects {verb}; these changed while the operation ran "
            f"(or depend on objects that did) and were left as they were: {listed}",
            failed=self.failed,
            deleted=sum(self.done.values()),
        )


def _conflicting(instances: Sequence[ModelBase], exc: Conflict) -> set[str]:
    """The KV ids a ``Conflict`` names among ``instances`` (every one if it names none)."""
    ids = {instance.kv_id for instance in instances}
    named = {key.partition(":")[2] for key in exc.keys} & ids
    return named or ids


# -- restoring -----------------------------------------------------------------------------


def restore_objects(instances: Sequence[ModelBase], scope: Scope) -> int:
    """Undo the soft delete of ``instances`` (read through ``scope``) and of the objects
    their delete cascaded to (see the module docstring); returns how many were restored.

    ``ValidationError`` if one of them points at a deleted object, before anything is
    written; ``DeleteConflict`` if some kept changing.
    """
    top: list[ModelBase] = []
    for instance in instances:
        meta = instance._meta
        if not meta.soft_delete:
            raise ValidationError(f"{meta.name} has no soft delete to restore from")
        if instance.is_new():
            raise ValidationError(f"this {meta.name} was never saved")
        if instance._values.get("deleted_at") is not None:
            top.append(instance)
    if not top:
        return 0
    system = Scope(scope.connection, None)
    # Liveness, not visibility: a restore brings back a link that was made already.
    check_references(top, system, restoring=True, ignore=(DO_NOTHING,))
    plan: list[tuple[type[Any], list[ModelBase]]] = []
    planned: dict[Key, bool] = {}
    for instance in top:
        planned[_key(instance)] = True
        if plan and plan[-1][0] is type(instance):
            plan[-1][1].append(instance)
        else:
            plan.append((type(instance), [instance]))
    queue = deque(plan)
    while queue:
        model, parents = queue.popleft()
        for child, found in _cascaded(model, parents, system, planned):
            for instance in found:
                planned[_key(instance)] = True
            plan.append((child, found))
            queue.append((child, found))
    for _, batch in plan:
        for instance in batch:
            instance.hooks.run_before("before_restore", instance)
    run = _Run(scope, planned)
    for model, batch in plan:  # parents first: a restored child's parent is live already
        failed = {(name, kv_id) for name, ids in run.failed.items() for kv_id in ids}
        ready = []
        for instance in batch:
            if _points_at(instance, failed):
                run.fail(instance)
            else:
                ready.append(instance)
        run.perform(
            model,
            ready,
            write=lambda chunk: sync.restore_many(chunk, system),
            prepare=lambda instance: instance.hooks.run_before("before_restore", instance),
            applies=lambda instance: instance._values.get("deleted_at") is not None,
            after=lambda instance: instance.hooks.run_after("after_restore", instance),
        )
    run.finish("restored")
    return sum(run.done.values())


def _points_at(instance: ModelBase, keys: set[Key]) -> bool:
    return any(
        (reference.related_model._meta.name, instance._values.get(reference.name)) in keys
        for reference in instance._meta.references
    )


def _cascaded(
    model: type[Any], parents: list[ModelBase], system: Scope, planned: dict[Key, bool]
) -> Iterator[tuple[type[Any], list[ModelBase]]]:
    """The children that the delete of ``parents`` soft-deleted with them (the same
    ``_deletion``), whose other references are live or restored with them."""
    stamps: dict[str, str] = {parent.kv_id: parent._values["deleted_at"] for parent in parents}
    deletions = {parent.kv_id: parent._extra.get(sync.DELETION_KEY) for parent in parents}
    for child, reference in references_to(model):
        if reference.on_delete is not CASCADE or not child._meta.soft_delete:
            continue
        for chunk in _chunks(list(stamps), PARENTS_PER_QUERY):
            query = (  # the stamp narrows the rows down; the delete's id decides
                child.objects.bind(system)
                .query()
                .only_deleted()
                .filter(
                    **{
                        f"{reference.name}__in": list(chunk),
                        "deleted_at__in": sorted({stamps[kv_id] for kv_id in chunk}),
                    }
                )
            )
            found = []
            for instance in query.with_data().iterator(CHILDREN_PER_READ):
                deletion = deletions.get(instance._values.get(reference.name))
                if (
                    deletion is not None
                    and instance._extra.get(sync.DELETION_KEY) == deletion
                    and _key(instance) not in planned
                ):
                    found.append(instance)
            if not found:
                continue
            live = {*planned, *(_key(instance) for instance in found)}
            dead = dead_references(found, system, restoring=True, live=live, ignore=(DO_NOTHING,))
            for instance in found:
                if id(instance) in dead:
                    logger.info(
                        "%s %s stays deleted: it references %s",
                        child._meta.name,
                        instance.kv_id,
                        ", ".join(f"{f.name}={value!r}" for f, value in dead[id(instance)]),
                    )
            kept = [instance for instance in found if id(instance) not in dead]
            if kept:
                yield child, kept
