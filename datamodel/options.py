"""Model options (``class Meta``) turned into a validated ``_meta``.

Every declaration mistake is a ``DeclarationError`` raised when the class is created, at
import, never at first save.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from datastore.keys import composite_key, validate_class_name, validate_namespace
from datastore.routing import DEFAULT_CLASS_NAMESPACES

from . import ids
from .constraints import UniqueConstraint
from .errors import DeclarationError
from .fields import MISSING, Array, Field, Integer, Reference, String, Timestamp
from .listings import Listing
from .seeds import Seed

__all__ = ["BUILTIN_NAMES", "Options", "build_options"]

BUILTIN_NAMES = ("user_id", "created_at", "updated_at", "deleted_at", "_auth", "_version")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_META_KEYS = {
    "name",
    "namespace",
    "key_pattern",
    "table",
    "sync_fields",
    "indexes",
    "ordering",
    "timestamps",
    "soft_delete",
    "user_tracking",
    "auth",
    "seeds",
    "default_limit",
    "max_limit",
    "abstract",
    "unique_together",
    "listings",
}


@dataclass
class Options:
    """What a model class declares, resolved: ``Model._meta``."""

    name: str
    fields: dict[str, Field]
    pk_name: str
    kv_class: str
    namespace: str
    key_pattern: str
    key_fields: list[str]
    table: str
    sync_fields: list[str]
    indexes: list[tuple[str, ...]]
    ordering: tuple[str, ...]  # Django's form: ("-created_at",)
    timestamps: bool
    soft_delete: bool
    user_tracking: bool
    auth: bool
    seeds: list[Any] = field(default_factory=list)
    unique_constraints: list[UniqueConstraint] = field(default_factory=list)
    listings: list[Listing] = field(default_factory=list)
    default_limit: int = 20
    max_limit: int = 100

    @property
    def pk(self) -> Field:
        return self.fields[self.pk_name]

    @property
    def pk_is_kv_id(self) -> bool:
        """Whether the primary key is left out of the key pattern: it is then the object's KV
        id (``proj_1:batch_20240902_134500`` for ``batch:{project_id}:{batch_id}``), set by
        the save path, unique as the KV key is."""
        return self.pk_name not in self.key_fields

    def row_pk(self, values: Mapping[str, Any]) -> Any:
        """The primary key of an object's metadata row, from its stored values."""
        if self.pk_is_kv_id:
            return self.kv_id(values)
        return values.get(self.pk_name)

    @property
    def columns(self) -> list[str]:
        """Metadata table columns: the sync fields (built-ins included), in order."""
        return self.sync_fields

    def kv_id(self, values: Mapping[str, Any]) -> str:
        """The id part of an object's KV key from its key fields (``proj_1:page_2`` for
        ``page:{project_id}:{page_id}``): the one composite-id rule."""
        return composite_key(*(str(values[name]) for name in self.key_fields))

    @functools.cached_property
    def auto_now_add(self) -> tuple[str, ...]:
        """The timestamp fields a create stamps (``created_at``, and any ``auto_now_add``)."""
        return tuple(
            name
            for name, value in self.fields.items()
            if isinstance(value, Timestamp) and value.auto_now_add
        )

    @functools.cached_property
    def auto_now(self) -> tuple[str, ...]:
        """The timestamp fields every save stamps (``updated_at``, and any ``auto_now``)."""
        return tuple(
            name
            for name, value in self.fields.items()
            if isinstance(value, Timestamp) and value.auto_now
        )

    @functools.cached_property
    def omitted_when_none(self) -> tuple[str, ...]:
        """The fields (``omit_none=True``) the stored object leaves out while they are None."""
        return tuple(name for name, value in self.fields.items() if value.omit_none)

    @functools.cached_property
    def references(self) -> list[Reference]:
        """The model's ``Reference`` fields (each a sync field)."""
        return [value for value in self.fields.values() if isinstance(value, Reference)]

    @functools.cached_property
    def row_converters(self) -> list[tuple[str, Callable[[Any], Any]]]:
        """Each metadata column with the function giving its SQL value (built once)."""
        return [(column, self.fields[column].to_sql) for column in self.sync_fields]


def _fail(model: str, message: str) -> DeclarationError:
    return DeclarationError(f"{model}: {message}")


def _builtin_fields(meta: dict[str, Any]) -> dict[str, Field]:
    builtins: dict[str, Field] = {}
    if meta["user_tracking"]:
        builtins["user_id"] = String(required=True)
    if meta["timestamps"]:
        builtins["created_at"] = Timestamp(auto_now_add=True)
        builtins["updated_at"] = Timestamp(auto_now=True)
    if meta["soft_delete"]:
        builtins["deleted_at"] = Timestamp()
    if meta["auth"]:
        builtins["_auth"] = Array(of=String())
    builtins["_version"] = Integer(default=0)
    for name, builtin in builtins.items():
        builtin.name = name
    return builtins


def _check_defaults(model: str, fields: dict[str, Field]) -> None:
    """Every plain default must be a value its field accepts; it is kept in its stored form
    (``3.0`` -> ``3``, a ``datetime`` -> ISO text). A callable default is checked each time it
    is called instead: what it returns may depend on the moment or the environment."""
    for name, model_field in fields.items():
        default = model_field.default
        if default is MISSING or callable(default):
            continue
        try:
            cleaned = model_field.clean(default)
        except ValueError as exc:
            raise _fail(model, f"field {name!r}: default {default!r} is invalid: {exc}") from None
        if not isinstance(cleaned, (list, dict)):  # a list or dict would be shared: keep it
            model_field.default = cleaned


def _parse_key_pattern(model: str, pattern: str) -> tuple[str, list[str]]:
    prefix, _, rest = pattern.partition(":")
    if not rest or not re.fullmatch(r"[a-z][a-z0-9_]*", prefix):
        raise _fail(
            model, f"key_pattern {pattern!r} must look like 'prefix:{{field}}[:{{field}}...]'"
        )
    key_fields = []
    for segment in rest.split(":"):
        match = _PLACEHOLDER.fullmatch(segment)
        if not match:
            raise _fail(model, f"key_pattern {pattern!r}: segment {segment!r} is not a {{field}}")
        key_fields.append(match.group(1))
    return prefix.upper(), key_fields


def _check_column(model: str, fields: dict[str, Field], name: str, role: str, why: str) -> None:
    """A field that must have a metadata column: it exists and has an SQL mapping."""
    if name not in fields:
        raise _fail(model, f"{role} {name!r} does not exist")
    if fields[name].sql_type is None:
        raise _fail(
            model,
            f"{role} {name!r} is of type {fields[name].type_name}, which has no SQL mapping "
            f"({why})",
        )


def _unique_constraints(
    model: str, fields: dict[str, Field], together: Any
) -> list[UniqueConstraint]:
    """``unique=True`` fields, then ``Meta.unique_together`` (a list of field-name tuples)."""
    constraints = [
        UniqueConstraint((name,), release_on_delete=model_field.release_on_delete)
        for name, model_field in fields.items()
        if model_field.unique and not model_field.primary_key
    ]
    for name, model_field in fields.items():
        if model_field.release_on_delete and not model_field.unique:
            raise _fail(model, f"field {name!r}: release_on_delete needs unique=True")
    if isinstance(together, str) or not isinstance(together, Sequence):
        raise _fail(model, "Meta.unique_together must be a list of tuples of field names")
    if together and all(isinstance(item, str) for item in together):
        together = [together]  # Django accepts a single tuple too
    for group in together:
        if isinstance(group, str) or not isinstance(group, Sequence) or len(group) < 1:
            raise _fail(model, f"Meta.unique_together entry {group!r} must be a tuple of fields")
        if len(set(group)) != len(group):
            raise _fail(model, f"Meta.unique_together entry {tuple(group)!r} repeats a field")
        constraints.append(UniqueConstraint(tuple(group)))
    seen: set[tuple[str, ...]] = set()
    for constraint in constraints:
        for name in constraint.fields:
            _check_column(model, fields, name, "unique field", "unique values are indexed too")
        if constraint.fields in seen:
            raise _fail(model, f"unique constraint on {constraint.name!r} is declared twice")
        seen.add(constraint.fields)
    return constraints


def _ordering(
    model: str, declared: Any, sync_fields: list[str], pk_name: str, timestamps: bool
) -> tuple[str, ...]:
    """``Meta.ordering`` as Django writes it (``["-priority", "created_at"]``); the older
    ``("created_at", "desc")`` pair is read as ``("-created_at",)``."""
    if declared is None:
        return ("-created_at",) if timestamps else (pk_name,)
    if isinstance(declared, str) or not isinstance(declared, Sequence) or not declared:
        raise _fail(model, f"Meta.ordering {declared!r} must be a list like ['-created_at']")
    specs = list(declared)
    if len(specs) == 2 and specs[1] in ("asc", "desc") and specs[1] not in sync_fields:
        specs = [f"-{specs[0]}" if specs[1] == "desc" else specs[0]]
    for spec in specs:
        if (
            not isinstance(spec, str)
            or spec.lstrip("-") not in sync_fields
            or spec.startswith("--")
        ):
            raise _fail(
                model, f"Meta.ordering entry {spec!r} must be a sync field, '-' to reverse it"
            )
    return tuple(specs)


def build_options(
    model: str,
    declared: dict[str, Field],
    meta_class: Any,
    *,
    reserved: Collection[str] = frozenset(),
) -> Options:
    """Resolve and validate ``class Meta`` against the declared fields.

    ``reserved``: names no field may take (the model class's own attributes, which a field
    would hide); names starting with ``_`` are always reserved.
    """
    meta = {key: value for key, value in vars(meta_class).items() if not key.startswith("__")}
    unknown = set(meta) - _META_KEYS
    if unknown:
        raise _fail(model, f"unknown Meta option(s): {', '.join(sorted(unknown))}")
    for flag in ("timestamps", "soft_delete", "user_tracking", "auth"):
        meta.setdefault(flag, True)
        if not isinstance(meta[flag], bool):
            raise _fail(model, f"Meta.{flag} must be True or False")

    name = meta.get("name", model.upper())
    try:
        validate_class_name(name)
    except ValueError as exc:
        raise _fail(model, f"Meta.name: {exc}") from None

    builtins = _builtin_fields(meta)
    for field_name in declared:
        if field_name.startswith("_") or field_name in reserved:
            raise _fail(model, f"field name {field_name!r} is reserved")
        if "__" in field_name:
            raise _fail(
                model,
                f"field name {field_name!r} contains '__', which separates a field from its "
                "lookup in filter() (status__in=...)",
            )
        if field_name in builtins:
            raise _fail(model, f"{field_name!r} is a built-in field; turn it off in Meta instead")

    primary = [name for name, declared_field in declared.items() if declared_field.primary_key]
    if len(primary) > 1:
        raise _fail(model, f"only one primary key field is allowed, found {primary}")
    fields = dict(declared)
    if not primary:
        pk = String(primary_key=True, generator=ids.uuid4)
        pk.name = "id"
        fields = {"id": pk, **fields}
        primary = ["id"]
    pk_name = primary[0]
    pk_field = fields[pk_name]
    if not isinstance(pk_field, String) or pk_field.sql_type is None:
        raise _fail(model, f"primary key {pk_name!r} must be a string field")
    fields.update(builtins)
    _check_defaults(model, fields)

    key_pattern = meta.get("key_pattern", f"{name.lower()}:{{{pk_name}}}")
    kv_class, key_fields = _parse_key_pattern(model, key_pattern)
    for key_field in key_fields:
        if key_field not in fields:
            raise _fail(model, f"key_pattern field {key_field!r} is not a field")
        if not fields[key_field].required:
            raise _fail(model, f"key_pattern field {key_field!r} must be required=True")
    # The primary key keys the metadata row, so it must be unique among all the model's
    # objects. A one-field key pattern is the primary key; a pattern of several fields may
    # leave it out when those fields are unique only together (``batch:{project_id}:
    # {batch_id}``): the primary key is then the object's KV id, set by the save path.
    if pk_name not in key_fields:
        if len(key_fields) < 2:
            raise _fail(
                model, f"key_pattern {key_pattern!r} must contain the primary key {{{pk_name}}}"
            )
        if pk_field.generator is not None:
            raise _fail(
                model,
                f"primary key {pk_name!r} is not in key_pattern {key_pattern!r}, so it is the "
                "object's KV id: it takes no generator",
            )

    namespace = meta.get("namespace") or DEFAULT_CLASS_NAMESPACES.get(kv_class)
    if namespace is None:
        raise _fail(model, f"no default namespace for class {kv_class!r}: set Meta.namespace")
    if f"NIMBUS_{namespace}" in DEFAULT_CLASS_NAMESPACES.values():
        namespace = f"NIMBUS_{namespace}"  # the spec's short form: 'PAGES' -> NIMBUS_PAGES
    try:
        validate_namespace(namespace)
    except ValueError as exc:
        raise _fail(model, f"Meta.namespace: {exc}") from None

    table = meta.get("table", f"{name.lower()}_meta")
    if not isinstance(table, str) or not _IDENTIFIER.fullmatch(table):
        raise _fail(model, f"Meta.table {table!r} is not a valid SQL table name")

    declared_sync = meta.get("sync_fields", [])
    if isinstance(declared_sync, str) or not isinstance(declared_sync, Sequence):
        raise _fail(model, "Meta.sync_fields must be a list of field names")
    unique_constraints = _unique_constraints(model, fields, meta.get("unique_together", []))
    # A unique field is a sync field: its metadata column carries a UNIQUE index too.
    declared_sync = [
        *declared_sync,
        *(name for constraint in unique_constraints for name in constraint.fields),
    ]
    references = {name: value for name, value in fields.items() if isinstance(value, Reference)}
    for reference in references.values():
        reference.check(model)
    declared_sync += list(references)  # children are found by their parent in the metadata table
    for sync_field in declared_sync:
        _check_column(model, fields, sync_field, "sync field", "it is stored in KV only")
    always = [pk_name, *key_fields, *(b for b in BUILTIN_NAMES if b in fields)]
    sync_fields = list(dict.fromkeys([pk_name, *key_fields, *declared_sync, *always]))

    ordering = _ordering(model, meta.get("ordering"), sync_fields, pk_name, meta["timestamps"])

    # The default listing (owner + ordering, the primary key breaking ties) always has an index.
    order_columns = tuple(dict.fromkeys((*(spec.lstrip("-") for spec in ordering), pk_name)))
    indexes: list[tuple[str, ...]] = []
    if meta["user_tracking"]:
        indexes.append(("user_id", *order_columns))
    indexes.append(order_columns)
    for index in meta.get("indexes", []):
        index = (index,) if isinstance(index, str) else tuple(index)
        for column in index:
            if column not in sync_fields:
                raise _fail(model, f"index on {column!r}: only sync fields can be indexed")
        indexes.append(index)
    for reference_name in references:  # children by parent, unless an index starts with it
        if not any(index[0] == reference_name for index in indexes):
            indexes.append((reference_name,))
    indexes = list(dict.fromkeys(indexes))

    seeds = list(meta.get("seeds", []))
    for seed in seeds:
        if not isinstance(seed, Seed):
            raise _fail(model, f"Meta.seeds must hold Seed(...) objects, not {seed!r}")
        for key_field in seed.key:
            if key_field not in sync_fields:
                raise _fail(model, f"seed key field {key_field!r} must be a sync field")

    listings = list(meta.get("listings", []))
    for listing in listings:
        if not isinstance(listing, Listing):
            raise _fail(model, f"Meta.listings must hold Listing(...) objects, not {listing!r}")
        listing.check(model, sync_fields, pk_name)
    if len({listing.name for listing in listings}) != len(listings):
        raise _fail(model, "Meta.listings: two listings have the same name")

    limits = {
        key: meta.get(key, default) for key, default in (("default_limit", 20), ("max_limit", 100))
    }
    if not 1 <= limits["default_limit"] <= limits["max_limit"]:
        raise _fail(model, "Meta.default_limit must be between 1 and Meta.max_limit")

    return Options(
        name=name,
        fields=fields,
        pk_name=pk_name,
        kv_class=kv_class,
        namespace=namespace,
        key_pattern=key_pattern,
        key_fields=key_fields,
        table=table,
        sync_fields=sync_fields,
        indexes=indexes,
        ordering=ordering,
        timestamps=meta["timestamps"],
        soft_delete=meta["soft_delete"],
        user_tracking=meta["user_tracking"],
        auth=meta["auth"],
        seeds=seeds,
        unique_constraints=unique_constraints,
        listings=listings,
        default_limit=limits["default_limit"],
        max_limit=limits["max_limit"],
    )
