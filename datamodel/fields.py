"""Field types: Python value <-> stored JSON <-> SQL column, with validation.

Each field converts an incoming value with ``clean`` (raising ``ValueError`` with a message
that names the problem), stores it in KV as JSON-ready data, and, if it can be a sync field,
maps to a SQLite/D1 column type with ``to_sql``/``from_sql``. ``Text`` and ``JSON`` have no SQL
mapping: they are KV-only (large content).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from datastore import codec

from .errors import DeclarationError
from .registry import registry

__all__ = [
    "JSON",
    "URL",
    "Array",
    "Boolean",
    "Choice",
    "Field",
    "Integer",
    "Number",
    "Reference",
    "String",
    "Text",
    "Timestamp",
]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class Field:
    """Base field. Subclasses set ``type_name``, ``sql_type`` and ``clean_value``.

    ``default`` is either a value the field accepts (checked when the model is declared) or,
    as in Django, a callable called for each new instance, like ``default_factory``; what it
    returns is checked then.
    """

    type_name = "field"
    sql_type: str | None = "TEXT"

    def __init__(
        self,
        *,
        required: bool = False,
        default: Any = MISSING,
        default_factory: Callable[[], Any] | None = None,
        choices: Sequence[Any] | None = None,
        max_length: int | None = None,
        validators: Sequence[Callable[[Any], None]] = (),
        primary_key: bool = False,
        generator: Callable[..., str] | None = None,
        help_text: str = "",
        unique: bool = False,
        release_on_delete: bool = False,
        omit_none: bool = False,
    ) -> None:
        if default is not MISSING and default_factory is not None:
            raise TypeError("give either default or default_factory, not both")
        if omit_none and (required or primary_key):
            raise TypeError("omit_none is for optional fields: not with required or primary_key")
        if default is not MISSING and isinstance(default, (list, dict, set)):
            raise TypeError("a mutable default is shared between instances: use default_factory")
        self.required = required or primary_key
        self.default = default
        self.default_factory = default_factory
        self.choices = tuple(choices) if choices is not None else None
        self.max_length = max_length
        self.validators = tuple(validators)
        self.primary_key = primary_key
        self.generator = generator
        self.help_text = help_text
        self.unique = unique
        # A soft delete releases the unique value (by default a deleted object keeps it).
        self.release_on_delete = release_on_delete
        # Left out of the stored object while None, as a TypeScript interface's optional
        # (`name?: T`) field is absent rather than null; the model still reads it as None.
        self.omit_none = omit_none
        self.name = ""  # set by the model class

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return instance._values.get(self.name)

    def __set__(self, instance: Any, value: Any) -> None:
        instance.set(self.name, value)

    @property
    def has_default(self) -> bool:
        return self.default is not MISSING or self.default_factory is not None

    @property
    def has_callable_default(self) -> bool:
        """Whether the default is computed for each new instance (``default=callable``, as in
        Django, or ``default_factory``); its result is cleaned then, not at declaration."""
        return self.default_factory is not None or callable(self.default)

    def get_default(self) -> Any:
        """The value a new instance starts with (``None`` when there is no default)."""
        if self.default_factory is not None:
            return self.default_factory()
        if callable(self.default):
            return self.default()
        return None if self.default is MISSING else self.default

    def clean(self, value: Any) -> Any:
        """The stored form of ``value``; ``ValueError`` with a readable message if invalid."""
        if value is None:
            return None
        value = self.clean_value(value)
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(repr(choice) for choice in self.choices)
            raise ValueError(f"{value!r} is not one of {allowed}")
        if self.max_length is not None and len(value) > self.max_length:
            raise ValueError(f"is {len(value)} long; the maximum is {self.max_length}")
        for validator in self.validators:
            validator(value)
        return value

    def clean_value(self, value: Any) -> Any:
        return value

    def to_sql(self, value: Any) -> Any:
        """The column value for a stored value."""
        return value

    def from_sql(self, value: Any) -> Any:
        """The stored value for a column value."""
        return value

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name or '?'}>"


class String(Field):
    type_name = "string"

    def clean_value(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {type(value).__name__}")
        return value


class Text(String):
    """Large text, stored in KV only."""

    type_name = "text"
    sql_type = None


_URL_SCHEMES = ("http", "https")


class URL(String):
    type_name = "url"

    def __init__(self, *, max_length: int | None = 2048, **options: Any) -> None:
        super().__init__(max_length=max_length, **options)

    def clean_value(self, value: Any) -> Any:
        value = super().clean_value(value)
        parts = urlsplit(value)
        if parts.scheme not in _URL_SCHEMES or not parts.netloc or re.search(r"\s", value):
            raise ValueError(f"{value!r} is not a valid http(s) URL")
        return value


class Choice(String):
    """A string restricted to ``choices`` (the spec's ``validation: [...]``)."""

    type_name = "choice"

    def __init__(self, choices: Sequence[str], **options: Any) -> None:
        if not choices:
            raise TypeError("Choice needs at least one choice")
        super().__init__(choices=choices, **options)


class Integer(Field):
    type_name = "integer"
    sql_type = "INTEGER"

    def clean_value(self, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ValueError(f"expected an integer, got {value!r}")
        return value


class Number(Field):
    type_name = "number"
    sql_type = "REAL"

    def clean_value(self, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite number")
        return value


class Boolean(Field):
    type_name = "boolean"
    sql_type = "INTEGER"

    def clean_value(self, value: Any) -> Any:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value

    def to_sql(self, value: Any) -> Any:
        return None if value is None else int(value)

    def from_sql(self, value: Any) -> Any:
        return None if value is None else bool(value)


class JSON(Field):
    """Any JSON value, stored in KV only."""

    type_name = "json"
    sql_type = None

    def clean_value(self, value: Any) -> Any:
        # a fresh copy of exactly what will be stored (and read back)
        return codec.normalize(value)


class Array(Field):
    """A JSON array; as a sync field it is a JSON text column (``contains`` uses json_each)."""

    type_name = "array"

    def __init__(self, of: Field | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.of = of

    def clean_value(self, value: Any) -> Any:
        if isinstance(value, (str, bytes, dict)) or not isinstance(value, (list, tuple)):
            raise ValueError(f"expected a list, got {type(value).__name__}")
        if self.of is None:
            return JSON().clean_value(list(value))
        cleaned = []
        for index, item in enumerate(value):
            try:
                cleaned.append(self.of.clean(item))
            except ValueError as exc:
                raise ValueError(f"item {index}: {exc}") from None
        return cleaned

    def to_sql(self, value: Any) -> Any:
        return None if value is None else _COMPACT_JSON.encode(value)

    def from_sql(self, value: Any) -> Any:
        return None if value is None else json.loads(value)


_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))  # what json.dumps(..., separators) gives
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?")
# The stored form itself: such a string only needs its date and time checked.
_CANONICAL = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


class Timestamp(Field):
    """A moment, stored as ISO-8601 UTC text with milliseconds (``2024-09-02T13:45:00.000Z``).

    Accepts ``datetime`` (naive means UTC) or ISO-8601 strings. The fixed format sorts
    correctly as text, so SQL ordering and range filters work on it.
    """

    type_name = "timestamp"

    def __init__(self, *, auto_now: bool = False, auto_now_add: bool = False, **options: Any):
        super().__init__(**options)
        self.auto_now = auto_now
        self.auto_now_add = auto_now_add

    def clean_value(self, value: Any) -> Any:
        if isinstance(value, dt.datetime):
            return codec.isoformat(value)
        if isinstance(value, str) and _CANONICAL.fullmatch(value):
            try:
                dt.datetime.fromisoformat(value[:23])
            except ValueError as exc:
                raise ValueError(f"{value!r} is not a valid ISO-8601 timestamp") from exc
            return value
        if isinstance(value, str) and _ISO.fullmatch(value):
            try:
                parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError as exc:
                raise ValueError(f"{value!r} is not a valid ISO-8601 timestamp") from exc
            return codec.isoformat(parsed)
        raise ValueError(f"expected an ISO-8601 timestamp or datetime, got {value!r}")


class Reference(String):
    """The id of another model's object, declared on the child as in Django's ``ForeignKey``::

        class Task(DataModel):
            workspace = fields.Reference("WORKSPACE", on_delete=CASCADE, required=True)

    ``to`` is the referenced model: its class, its ``Meta.name`` (``"WORKSPACE"``) or its
    class name (``"Workspace"``); a name is resolved through the registry at first use, so
    the referenced model may be declared later. ``on_delete`` (required, as in Django) says
    what happens to this object when the referenced one is deleted: ``CASCADE``, ``PROTECT``,
    ``SET_NULL`` (the field must not be required) or ``DO_NOTHING`` (see
    ``datamodel.deletion``).

    The value is the referenced object's KV id: its primary key when its key pattern has one
    field (``"ws_1"``), the composite id otherwise (``"ws_1:task_2"`` for
    ``task:{workspace}:{task_id}``), so the object is always read with one KV read and
    ``Model.objects.auth(u).get(value)`` finds it. An instance is accepted too and stored as
    its id. A reference is always a sync field, with an index unless a declared index
    already starts with it: children are found by their parent in the metadata table.

    A save checks that a new or changed reference points at an object that exists, is not
    deleted and is visible to the saving scope (one bulk KV read per referenced model), and
    a restore that every reference but ``DO_NOTHING``'s points at a live object;
    ``instance.related(name)`` and ``QuerySet.with_related(name)`` read the object itself.
    """

    type_name = "reference"

    def __init__(self, to: type[Any] | str, *, on_delete: Callable[..., None], **options: Any):
        if isinstance(to, str):
            if not to:
                raise DeclarationError("Reference needs the referenced model or its name")
        elif not isinstance(to, type):
            raise DeclarationError(
                f"Reference to {to!r}: give the model class, its Meta.name or its class name"
            )
        if not callable(on_delete):
            raise DeclarationError(
                f"Reference to {_model_label(to)}: on_delete must be CASCADE, PROTECT, SET_NULL, "
                f"DO_NOTHING or a function like them, not {on_delete!r}"
            )
        super().__init__(**options)
        self.to = to
        self.on_delete = on_delete
        self.owner = "?"  # the declaring class, for messages
        self._model: type[Any] | None = to if isinstance(to, type) else None

    def __set_name__(self, owner: type, name: str) -> None:
        super().__set_name__(owner, name)
        self.owner = owner.__name__

    def check(self, model: str) -> None:
        """What can be checked when ``model`` is declared; ``DeclarationError`` otherwise."""
        label = f"{model}.{self.name}"
        if self.primary_key:
            raise DeclarationError(f"{label}: a Reference cannot be the primary key")
        if self.required and getattr(self.on_delete, "sets_null", False):
            raise DeclarationError(
                f"{label}: on_delete={getattr(self.on_delete, '__name__', self.on_delete)} "
                "stores None, so the field cannot be required=True"
            )
        if self._model is not None and not hasattr(self._model, "_meta"):
            raise DeclarationError(f"{label}: Reference to {self._model!r}, which is not a model")

    @property
    def related_model(self) -> type[Any]:
        """The referenced model class, resolved through the registry at first use."""
        if self._model is None:
            self._model = self._resolve(str(self.to))
        return self._model

    def _resolve(self, name: str) -> type[Any]:
        if name in registry:
            return registry.get(name)
        found = [model for model in registry if model.__name__ == name]
        if len(found) == 1:
            return found[0]
        label = f"{self.owner}.{self.name}"
        if found:
            raise DeclarationError(
                f"{label}: Reference to {name!r} is ambiguous: "
                f"{', '.join(model._meta.name for model in found)} all have that class name; "
                "use the Meta.name or the class"
            )
        raise DeclarationError(
            f"{label}: Reference to {name!r}, but no declared model has that Meta.name or "
            "class name"
        )

    def clean_value(self, value: Any) -> Any:
        if hasattr(type(value), "_meta") and hasattr(type(value), "kv_id"):  # an instance
            if value.is_new():
                raise ValueError(f"the {value._meta.name} must be saved before it is referenced")
            if type(value) is not self.related_model:
                raise ValueError(
                    f"expected a {self.related_model._meta.name} or its id, "
                    f"got a {value._meta.name}"
                )
            return value.kv_id
        value = super().clean_value(value)
        if not value:
            raise ValueError("an id cannot be empty: use None for no reference")
        return value


def _model_label(to: Any) -> str:
    return to if isinstance(to, str) else getattr(to, "__name__", repr(to))
