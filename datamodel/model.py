"""The ``DataModel`` base class: declaration (fields + ``class Meta``) and the instance API.

::

    class Page(DataModel):
        page_id = fields.String(primary_key=True, generator=ids.uuid4)
        project_id = fields.String(required=True)
        url = fields.URL(required=True)
        status = fields.Choice(["pending", "processing", "completed", "failed"], default="pending")
        content = fields.Text()

        class Meta:
            namespace = "PAGES"
            key_pattern = "page:{project_id}:{page_id}"
            table = "page_meta"
            sync_fields = ["url", "status"]

        def after_update(self, changes):
            ...

    page = Page.objects.auth(user_id).create(project_id="proj_1", url="https://example.com")
    page.set("status", "completed")
    page.save()
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from datastore import InvalidKey, ScopedDatastore, codec
from datastore.keys import composite_key

from . import sync
from .connection import Connection
from .errors import DeclarationError, ValidationError
from .fields import MISSING, Field
from .hooks import EVENTS, HookRegistry
from .options import Options, build_options
from .registry import registry

if TYPE_CHECKING:
    from .manager import Manager

__all__ = ["DataModel", "Scope"]

# Fields the model layer sets itself; callers cannot assign them.
MANAGED = ("created_at", "updated_at", "deleted_at", "_auth", "_version")


@dataclass(frozen=True)
class Scope:
    """Who is acting (a user id, or ``None`` for system access) and on which stores."""

    connection: Connection
    user_id: str | None

    def store(self, meta: Options) -> ScopedDatastore:
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


@dataclass
class ModelState:
    adding: bool = True
    # The values as last stored; ``None`` while they are still exactly the instance's values
    # (just loaded or saved). The copy is taken only when something may change them.
    saved: dict[str, Any] | None = field(default_factory=dict)
    kv_version: int = 0  # the store's version, for compare-and-set


class DataModelMeta(type):
    """Collects fields and ``Meta`` into ``_meta``, validates them, registers the model."""

    def __new__(mcls, name: str, bases: tuple[type, ...], attrs: dict[str, Any]) -> Any:
        meta_class = attrs.pop("Meta", None)
        cls = super().__new__(mcls, name, bases, attrs)
        if not any(isinstance(base, DataModelMeta) for base in bases):
            return cls  # the DataModel base itself
        declared: dict[str, Field] = {}
        for base in reversed(cls.__mro__[1:]):
            declared.update(getattr(base, "_declared_fields", {}))
        declared.update({key: value for key, value in attrs.items() if isinstance(value, Field)})
        cls._declared_fields = declared  # type: ignore[attr-defined]
        if getattr(meta_class, "abstract", False):
            return cls
        options = build_options(name, declared, meta_class or type("Meta", (), {}))
        cls._meta = options  # type: ignore[attr-defined]
        for field_name, model_field in options.fields.items():
            if not isinstance(attrs.get(field_name), Field):
                setattr(cls, field_name, model_field)
        hooks = HookRegistry(options.name)
        for event in EVENTS:
            method = getattr(cls, event, None)
            if method is not None:
                hooks.connect(event, method)
        cls.hooks = hooks  # type: ignore[attr-defined]
        from .manager import Manager

        cls.objects = Manager(cls)  # type: ignore[attr-defined]
        registry.register(cls)  # type: ignore[arg-type]
        return cls


class DataModel(metaclass=DataModelMeta):
    """Base class of every model. See the module docstring."""

    _meta: ClassVar[Options]
    objects: ClassVar[Manager]
    hooks: ClassVar[HookRegistry]

    def __init__(self, **values: Any) -> None:
        if not hasattr(type(self), "_meta"):
            raise DeclarationError(f"{type(self).__name__} is abstract")
        self._values: dict[str, Any] = {}
        self._extra: dict[str, Any] = {}  # stored keys no field declares; kept on save
        self._state = ModelState()
        self._scope: Scope | None = None
        for name, model_field in self._meta.fields.items():
            self._values[name] = model_field.get_default()
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
            return composite_key(*(str(part) for part in parts))
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

    # -- persistence ---------------------------------------------------------------------

    def _require_scope(self) -> Scope:
        if self._scope is None:
            raise RuntimeError(
                f"this {self._meta.name} is not bound to a scope: create it with "
                f"{type(self).__name__}.objects.auth(user_id).new(...) or .system().new(...)"
            )
        return self._scope

    def save(self) -> DataModel:
        """Create or update: KV first (compare-and-set), then the metadata row, then hooks."""
        sync.save(self, self._require_scope())
        return self

    def delete(self) -> None:
        """Soft delete (sets ``deleted_at``); a hard delete for models without soft delete."""
        sync.delete(self, self._require_scope())

    def restore(self) -> DataModel:
        """Undo a soft delete."""
        sync.restore(self, self._require_scope())
        return self

    def load(self, object_id: str) -> DataModel:
        """Replace this instance's values with the stored object ``object_id`` (its KV id)."""
        scope = self._require_scope()
        loaded = type(self).objects.bind(scope).get(object_id, include_deleted=True)
        self._values, self._extra, self._state = loaded._values, loaded._extra, loaded._state
        return self

    @classmethod
    def _from_stored(cls, data: Mapping[str, Any], version: int, scope: Scope | None) -> DataModel:
        """An instance for a stored object, without re-validating what is already stored."""
        instance = cls.__new__(cls)
        fields = cls._meta.fields
        instance._values = {name: data.get(name) for name in fields}
        instance._extra = {key: value for key, value in data.items() if key not in fields}
        instance._state = ModelState(False, None, version)
        instance._scope = scope
        return instance

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DataModel) or type(other) is not type(self):
            return NotImplemented
        return self.get_data() == other.get_data()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        state = "new" if self._state.adding else "stored"
        return f"<{type(self).__name__} {self.pk!r} ({state})>"
