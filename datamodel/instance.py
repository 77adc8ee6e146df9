"""A model instance's values and stored state, below persistence.

``ModelBase`` is what the layers under the model class (manager, query, sync) work with, so
they never import ``datamodel.model``: data flows one way, model -> manager -> query/sync.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from datastore import InvalidKey, codec

from .errors import DeclarationError, ValidationError
from .fields import MISSING

if TYPE_CHECKING:
    from typing import Self

    from .hooks import HookRegistry
    from .options import Options
    from .scope import Scope

__all__ = ["MANAGED", "ModelBase", "ModelState"]

# Fields the model layer sets itself; callers cannot assign them.
MANAGED = ("created_at", "updated_at", "deleted_at", "_auth", "_version")


@dataclass
class ModelState:
    adding: bool = True
    # The values as last stored; ``None`` while they are still exactly the instance's values
    # (just loaded or saved). The copy is taken only when something may change them.
    saved: dict[str, Any] | None = field(default_factory=dict)
    kv_version: int = 0  # the store's version, for compare-and-set


class ModelBase:
    """An object's values and stored state; ``DataModel`` adds persistence."""

    _meta: ClassVar[Options]
    hooks: ClassVar[HookRegistry]
    # Referenced objects by Reference field: {name: (the id read, the object or None)}, set by
    # ``QuerySet.with_related()`` and ``related()`` (``datamodel.related``).
    _related_cache: dict[str, tuple[Any, ModelBase | None]] | None = None

    def __init__(self, **values: Any) -> None:
        if not hasattr(type(self), "_meta"):
            raise DeclarationError(f"{type(self).__name__} is abstract")
        self._values: dict[str, Any] = {}
        self._extra: dict[str, Any] = {}  # stored keys no field declares; kept on save
        self._state = ModelState()
        self._scope: Scope | None = None
        errors: dict[str, list[str]] = {}
        for name, model_field in self._meta.fields.items():
            if name in values:
                self._values[name] = None  # set() below puts the given value
                continue
            default = model_field.get_default()
            if model_field.has_callable_default:
                # A plain default was checked at declaration; a computed one is checked here.
                try:
                    default = model_field.clean(default)
                except ValueError as exc:
                    errors[name] = [f"default {default!r} is invalid: {exc}"]
            self._values[name] = default
        if errors:
            raise ValidationError(errors)
        self.set(values)

    # -- values --------------------------------------------------------------------------

    def set(self, field_name: str | Mapping[str, Any], value: Any = MISSING) -> None:
        """Set one field (``set("status", "done")``) or several (``set({...})``), validated."""
        if isinstance(field_name, Mapping):
            updates = dict(field_name)
        elif value is MISSING:
            raise TypeError("set(field, value) needs a value, or pass a dict")
        else:
            updates = {field_name: value}
        errors: dict[str, list[str]] = {}
        cleaned: dict[str, Any] = {}
        for name, new_value in updates.items():
            model_field = self._meta.fields.get(name)
            if model_field is None:
                errors[name] = [f"unknown field for {self._meta.name}"]
            elif name in MANAGED:
                errors[name] = ["is managed by the model layer and cannot be set"]
            else:
                try:
                    cleaned[name] = model_field.clean(new_value)
                except ValueError as exc:
                    errors[name] = [str(exc)]
        if errors:
            raise ValidationError(errors)
        self._snapshot()
        self._values.update(cleaned)

    def get(self, field_name: str) -> Any:
        """The value of a field (``None`` if unset)."""
        if field_name not in self._meta.fields:
            raise ValidationError({field_name: [f"unknown field for {self._meta.name}"]})
        value = self._values.get(field_name)
        if isinstance(value, (dict, list)):
            # The caller may change it in place: the snapshot must not be that same object.
            saved = self._snapshot()
            if saved.get(field_name) is value:
                saved[field_name] = codec.copy_value(value)
        return value

    def _snapshot(self) -> dict[str, Any]:
        """The values as last stored, kept before they can change. A shallow copy is enough:
        ``set`` replaces values, and ``get`` separates a dict or list it hands out."""
        if self._state.saved is None:
            self._state.saved = dict(self._values)
        return self._state.saved

    def saved_value(self, field_name: str) -> Any:
        """A field's value as last stored (``None`` for a new object)."""
        saved = self._state.saved
        return self._values.get(field_name) if saved is None else saved.get(field_name)

    def get_data(self) -> dict[str, Any]:
        """A copy of every field's value (plus stored keys no field declares)."""
        return codec.copy_value({**self._extra, **self._values})

    @property
    def pk(self) -> Any:
        return self._values.get(self._meta.pk_name)

    @property
    def kv_id(self) -> str:
        """The id part of the KV key (``proj_1:page_2`` for ``page:{project_id}:{page_id}``)."""
        parts = [self._values.get(name) for name in self._meta.key_fields]
        missing = [
            name for name, part in zip(self._meta.key_fields, parts, strict=True) if not part
        ]
        if missing:
            raise ValidationError({name: ["is required (part of the key)"] for name in missing})
        try:
            return self._meta.kv_id(self._values)
        except InvalidKey as exc:
            raise ValidationError({name: [str(exc)] for name in self._meta.key_fields}) from None

    @property
    def scope(self) -> Scope | None:
        return self._scope

    def is_new(self) -> bool:
        """Whether the object has not been stored yet."""
        return self._state.adding

    def changes(self) -> dict[str, Any]:
        """Fields whose value differs from what was last stored: ``{field: new value}``."""
        saved = self._state.saved
        if saved is None:
            return {}
        return {
            name: codec.copy_value(value)
            for name, value in self._values.items()
            if saved.get(name) != value
        }

    def full_clean(self) -> None:
        """Check required fields; ``ValidationError`` naming every missing one."""
        errors = {
            name: ["is required"]
            for name, model_field in self._meta.fields.items()
            if model_field.required and self._values.get(name) in (None, "")
        }
        if errors:
            raise ValidationError(errors)

    def save(self) -> Self:
        """Create or update (see ``DataModel.save``)."""
        raise NotImplementedError

    def delete(self, *, hard: bool = False) -> tuple[int, dict[str, int]]:
        """Delete (see ``DataModel.delete``)."""
        raise NotImplementedError

    @classmethod
    def _save_many(cls, instances: Sequence[Self], scope: Scope) -> None:
        """Save these instances in bulk round trips (see ``DataModel``): the layers below
        the model class reach the save path through it, so they never import it."""
        raise NotImplementedError

    @classmethod
    def _from_stored(cls, data: Mapping[str, Any], version: int, scope: Scope | None) -> Self:
        """An instance for a stored object, without re-validating what is already stored."""
        instance = cls.__new__(cls)
        fields = cls._meta.fields
        instance._values = {name: data.get(name) for name in fields}
        instance._extra = {key: value for key, value in data.items() if key not in fields}
        instance._state = ModelState(False, None, version)
        instance._scope = scope
        return instance

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ModelBase) or type(other) is not type(self):
            return NotImplemented
        return self.get_data() == other.get_data()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        state = "new" if self._state.adding else "stored"
        return f"<{type(self).__name__} {self.pk!r} ({state})>"
