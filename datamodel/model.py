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

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from . import sync
from .deletion import Collector, restore_objects
from .errors import ValidationError
from .fields import Field
from .hooks import EVENTS, HookRegistry
from .instance import MANAGED, ModelBase, ModelState
from .manager import Manager
from .options import build_options
from .registry import registry
from .related import check_references, get_related
from .scope import Scope

if TYPE_CHECKING:
    from typing import Self

__all__ = ["MANAGED", "RESERVED_NAMES", "DataModel", "ModelState", "Scope"]


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
        options = build_options(
            name, declared, meta_class or type("Meta", (), {}), reserved=RESERVED_NAMES
        )
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
        for listing in options.listings:
            listing.connect(cls)  # type: ignore[arg-type]
        cls.objects = Manager(cls)  # type: ignore[attr-defined]
        registry.register(cls)  # type: ignore[arg-type]
        return cls


class DataModel(ModelBase, metaclass=DataModelMeta):
    """Base class of every model. See the module docstring."""

    objects: ClassVar[Manager[Any]]

    # -- persistence ---------------------------------------------------------------------

    def _require_scope(self) -> Scope:
        if self._scope is None:
            raise RuntimeError(
                f"this {self._meta.name} is not bound to a scope: create it with "
                f"{type(self).__name__}.objects.auth(user_id).new(...) or .system().new(...)"
            )
        return self._scope

    def save(self) -> Self:
        """Create or update: KV first (compare-and-set), then the metadata row, then hooks.

        The objects a new or changed ``Reference`` points at must exist and be live for this
        scope: one KV read, before the hooks run; ``ValidationError`` naming the field
        otherwise.
        """
        scope = self._require_scope()
        check_references([self], scope)
        sync.save(self, scope)
        return self

    def delete(self, *, hard: bool = False) -> tuple[int, dict[str, int]]:
        """Soft delete (sets ``deleted_at``), or a hard one with ``hard=True`` or for models
        without soft delete; the objects that reference this one follow their
        ``on_delete`` (see ``datamodel.deletion``). Returns ``(objects deleted, {model
        name: count})`` as Django's ``Model.delete()``; ``(0, {})`` for an object already
        soft-deleted (unless ``hard``)."""
        if self._state.adding:
            raise ValidationError(f"this {self._meta.name} was never saved")
        collector = Collector(self._require_scope(), hard=hard)
        collector.collect([self])
        return collector.delete()

    def restore(self) -> Self:
        """Undo a soft delete, with the objects the same delete cascaded to (see
        ``datamodel.deletion``). ``ValidationError`` if this object references a deleted one
        (restore that first)."""
        restore_objects([self], self._require_scope())
        return self

    @classmethod
    def _save_many(cls, instances: Sequence[Self], scope: Scope) -> None:
        sync.bulk_save(instances, scope)

    def related(self, field_name: str) -> DataModel | None:
        """The object the ``Reference`` field ``field_name`` points at, as Django's
        ``task.workspace`` (the field itself holds the id, like ``task.workspace_id``):
        ``None`` if the field is empty or the object missing, deleted or not visible to this
        scope. Read once (one KV read) and kept while the field keeps its value;
        ``query.with_related(...)`` reads it for a whole page at once."""
        return get_related(self, field_name)  # type: ignore[return-value]

    def load(self, object_id: str) -> Self:
        """Replace this instance's values with the stored object ``object_id`` (its KV id)."""
        scope = self._require_scope()
        loaded = type(self).objects.bind(scope).get(object_id, include_deleted=True)
        self._values, self._extra, self._state = loaded._values, loaded._extra, loaded._state
        return self


def _reserved_names() -> frozenset[str]:
    """Every public attribute of the model base classes (methods, properties, ``objects``,
    ``hooks``) and the hook method names: a field of the same name would hide it."""
    names: set[str] = set(EVENTS)
    for base in (ModelBase, DataModel):
        names.update(vars(base))
        names.update(base.__annotations__)  # declared only: ``objects``, ``hooks``
    return frozenset(name for name in names if not name.startswith("_"))


RESERVED_NAMES = _reserved_names()
