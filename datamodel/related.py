"""References between models: who points at a model, checks on save, related objects in bulk.

A ``fields.Reference`` stores the referenced object's KV id. This module answers the
questions the layers above ask about those ids, each with bulk reads:

* ``references_to(model)``: the ``(child model, field)`` pairs that point at ``model`` (what
  a delete must look at; ``datamodel.deletion`` plans with it);
* ``check_references(instances, scope)``: every referenced object exists and is live, as
  seen by the saving scope: one bulk KV read per referenced model, run on create, when a
  reference changes, and on restore;
* ``load_related(instances, names, scope)``: ``QuerySet.with_related()``'s hydration, one bulk
  KV read per referenced model for a whole page;
* ``get_related(instance, name)``: ``instance.related(name)``, from that cache or one KV read.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .errors import ValidationError
from .fields import Reference
from .registry import registry

if TYPE_CHECKING:
    from .instance import ModelBase
    from .scope import Scope

__all__ = [
    "check_references",
    "dead_references",
    "get_related",
    "load_related",
    "reference_field",
    "references_to",
]


def references_to(model: type[Any]) -> list[tuple[type[Any], Reference]]:
    """Every ``(child model, Reference field)`` of the declared models that points at
    ``model`` (resolving each reference: a reference to a model that does not exist is a
    ``DeclarationError`` naming it)."""
    found = []
    for child in registry:
        for field in child._meta.references:
            if field.related_model is model:
                found.append((child, field))
    return found


def reference_field(model: type[ModelBase], name: str) -> Reference:
    """The ``Reference`` field ``name`` of ``model``; ``ValidationError`` if it is not one."""
    field = model._meta.fields.get(name)
    if not isinstance(field, Reference):
        references = ", ".join(reference.name for reference in model._meta.references)
        raise ValidationError(
            {name: [f"is not a Reference field of {model._meta.name} (references: {references})"]}
        )
    return field


def _read_live(model: type[ModelBase], ids: Collection[str], scope: Scope) -> dict[str, ModelBase]:
    """The live objects among these KV ids as ``scope`` sees them, in one bulk read."""
    if not ids:
        return {}
    meta = model._meta
    found = scope.store(meta).read_many(meta.kv_class, list(ids))
    return {
        kv_id: model._from_stored(stored.data, stored.version, scope)
        for kv_id, stored in found.items()
        if stored.data.get("deleted_at") is None
    }


def dead_references(
    instances: Sequence[ModelBase],
    scope: Scope,
    *,
    restoring: bool = False,
    live: Collection[tuple[str, str]] = (),
    ignore: Collection[Callable[..., None]] = (),
) -> dict[int, list[tuple[Reference, str]]]:
    """The references of these instances whose object is missing, deleted or not visible to
    ``scope``: ``{id(instance): [(field, value), ...]}``.

    Checked are the references of new instances and those that changed, or with
    ``restoring`` every one (a restored object must not point at a deleted one), except
    those whose ``on_delete`` is in ``ignore``. ``live`` holds ``(model name, KV id)`` pairs
    to count as live without reading them (the objects of the same batch, or those a
    restore brings back with it). One bulk KV read per referenced model.
    """
    wanted: dict[type[ModelBase], set[str]] = {}
    checks: list[tuple[ModelBase, Reference, str]] = []
    for instance in instances:
        meta = instance._meta
        if not meta.references:
            continue
        changed = None if instance.is_new() or restoring else instance.changes()
        for field in meta.references:
            value = instance._values.get(field.name)
            if value is None or (changed is not None and field.name not in changed):
                continue
            if field.on_delete in ignore:
                continue
            target = field.related_model
            if (target._meta.name, value) in live or (target._meta.name, value) in scope.live:
                continue  # in the batch, or read live through this scope
            wanted.setdefault(target, set()).add(value)
            checks.append((instance, field, value))
    found = {target: _read_live(target, ids, scope) for target, ids in wanted.items()}
    dead: dict[int, list[tuple[Reference, str]]] = {}
    for instance, field, value in checks:
        if value not in found[field.related_model]:
            dead.setdefault(id(instance), []).append((field, value))
    return dead


def check_references(
    instances: Sequence[ModelBase],
    scope: Scope,
    *,
    restoring: bool = False,
    ignore: Collection[Callable[..., None]] = (),
) -> None:
    """``ValidationError`` naming each field whose referenced object is missing, deleted or
    not visible to ``scope`` (see ``dead_references``); the instances of the batch count as
    existing."""
    batch = {(instance._meta.name, instance.kv_id) for instance in instances if _has_id(instance)}
    dead = dead_references(instances, scope, restoring=restoring, live=batch, ignore=ignore)
    if not dead:
        return
    errors: dict[str, list[str]] = {}
    for problems in dead.values():
        for field, value in problems:
            target = field.related_model._meta.name
            message = (
                f"{target} {value!r} is deleted or does not exist"
                if not restoring
                else f"{target} {value!r} is deleted or does not exist: restore it first"
            )
            errors.setdefault(field.name, []).append(message)
    raise ValidationError(errors)


def _has_id(instance: ModelBase) -> bool:
    return all(instance._values.get(name) for name in instance._meta.key_fields)


def load_related(instances: Sequence[ModelBase], names: Iterable[str], scope: Scope) -> None:
    """Cache the objects these ``Reference`` fields point at on each instance (``None`` for a
    missing, deleted or invisible one): one bulk KV read per referenced model."""
    if not instances:
        return
    model = type(instances[0])
    fields = [reference_field(model, name) for name in names]
    wanted: dict[type[ModelBase], set[str]] = {}
    for field in fields:
        ids = wanted.setdefault(field.related_model, set())
        ids.update(value for value in (i._values.get(field.name) for i in instances) if value)
    found = {target: _read_live(target, ids, scope) for target, ids in wanted.items()}
    for instance in instances:
        cache = _cache(instance)
        for field in fields:
            value = instance._values.get(field.name)
            related = found[field.related_model].get(value) if value else None
            cache[field.name] = (value, related)


def _cache(instance: ModelBase) -> dict[str, tuple[Any, ModelBase | None]]:
    if instance._related_cache is None:
        instance._related_cache = {}
    return instance._related_cache


def get_related(instance: ModelBase, name: str) -> ModelBase | None:
    """The object the ``Reference`` field ``name`` points at, as the instance's scope sees
    it: from ``with_related()``'s cache, else one KV read (then cached while the field keeps
    its value). ``None`` if the field is empty or the object missing, deleted or invisible."""
    field = reference_field(type(instance), name)
    value = instance._values.get(name)
    if value is None:
        return None
    cache = _cache(instance)
    cached = cache.get(name)
    if cached is not None and cached[0] == value:
        return cached[1]
    scope = instance.scope
    if scope is None:
        raise RuntimeError(f"this {instance._meta.name} is not bound to a scope")
    related = _read_live(field.related_model, [value], scope).get(value)
    cache[name] = (value, related)
    return related
