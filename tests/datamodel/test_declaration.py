"""Declaration mistakes fail when the class is created, never at first save."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest

from datamodel import DataModel, DeclarationError, fields, registry


def declare(meta: dict[str, Any] | None = None, **model_fields: Any) -> type[DataModel]:
    attrs: dict[str, Any] = dict(model_fields)
    if meta is not None:
        attrs["Meta"] = type("Meta", (), meta)
    try:
        return type("Widget", (DataModel,), attrs)
    finally:
        registry.unregister("WIDGET")


BASE = {"namespace": "NIMBUS_WIDGETS"}


@pytest.mark.parametrize(
    ("meta", "model_fields", "message"),
    [
        ({**BASE, "sync_fields": ["nope"]}, {}, "sync field 'nope' does not exist"),
        (
            {**BASE, "sync_fields": ["body"]},
            {"body": fields.Text()},
            "type text, which has no SQL mapping",
        ),
        (
            {**BASE, "sync_fields": ["blob"]},
            {"blob": fields.JSON()},
            "type json, which has no SQL mapping",
        ),
        (
            {**BASE, "key_pattern": "widget:{group}:{id}"},
            {"group": fields.String()},
            "key_pattern field 'group' must be required",
        ),
        ({**BASE, "key_pattern": "widget:{missing}:{id}"}, {}, "'missing' is not a field"),
        (
            {**BASE, "key_pattern": "widget:{group}"},
            {"group": fields.String(required=True)},
            "primary key",
        ),
        ({**BASE, "key_pattern": "Widget-{id}"}, {}, "must look like"),
        ({**BASE, "colour": "blue"}, {}, "unknown Meta option"),
        ({**BASE, "ordering": ("nope", "asc")}, {}, "Meta.ordering"),
        ({**BASE, "indexes": [("colour",)]}, {"colour": fields.String()}, "only sync fields"),
        ({**BASE, "table": "bad table"}, {}, "not a valid SQL table name"),
        ({"namespace": "bad/ns"}, {}, "Meta.namespace"),
        ({}, {}, "no default namespace"),
        (
            BASE,
            {"a": fields.String(primary_key=True), "b": fields.String(primary_key=True)},
            "only one primary key",
        ),
        (BASE, {"n": fields.Integer(primary_key=True)}, "must be a string field"),
        (BASE, {"user_id": fields.String()}, "built-in field"),
        (BASE, {"save": fields.String()}, "reserved"),
        (BASE, {"_secret": fields.String()}, "reserved"),
        ({**BASE, "timestamps": "yes"}, {}, "must be True or False"),
        ({**BASE, "default_limit": 500}, {}, "default_limit"),
    ],
)
def test_declaration_errors(meta: dict, model_fields: dict, message: str) -> None:
    with pytest.raises(DeclarationError, match=message):
        declare(meta, **model_fields)


@pytest.mark.parametrize(
    ("model_field", "message"),
    [
        (fields.Integer(default="x"), "default 'x' is invalid: expected an integer, got 'x'"),
        (
            fields.Choice(["a", "b"], default="zzz"),
            "default 'zzz' is invalid: 'zzz' is not one of 'a', 'b'",
        ),
        (fields.String(max_length=2, default="abc"), "default 'abc' is invalid: is 3 long"),
        (fields.URL(default="nowhere"), "default 'nowhere' is invalid: 'nowhere' is not a valid"),
        (fields.Boolean(default=1), "default 1 is invalid: expected true or false"),
        (fields.Timestamp(default="soon"), "default 'soon' is invalid: expected an ISO-8601"),
    ],
    ids=["integer", "choice", "max_length", "url", "boolean", "timestamp"],
)
def test_a_default_its_field_refuses_fails_at_declaration_naming_model_and_field(
    model_field: fields.Field, message: str
) -> None:
    with pytest.raises(DeclarationError, match=re.escape(f"Widget: field 'priority': {message}")):
        declare(BASE, priority=model_field)


def test_a_valid_default_is_kept_in_its_stored_form() -> None:
    moment = dt.datetime(2024, 9, 2, 13, 45, tzinfo=dt.UTC)
    model = declare(
        BASE, priority=fields.Integer(default=3.0), due=fields.Timestamp(default=moment)
    )
    widget = model()
    assert widget.get("priority") == 3 and isinstance(widget.get("priority"), int)
    assert widget.get("due") == "2024-09-02T13:45:00.000Z"


@pytest.mark.parametrize(
    "name",
    [
        "changes",
        "save",
        "full_clean",
        "saved_value",
        "get_data",
        "is_new",
        "load",
        "restore",
        "kv_id",
        "scope",
        "objects",
        "hooks",
        "before_create",
        "after_update",
    ],
)
def test_a_field_named_like_a_model_attribute_is_refused(name: str) -> None:
    # the field would hide the attribute: save() calls self.changes(), for one
    with pytest.raises(DeclarationError, match=f"Widget: field name '{name}' is reserved"):
        declare(BASE, **{name: fields.String()})


def test_every_public_attribute_of_the_model_base_classes_is_reserved() -> None:
    from datamodel.instance import ModelBase
    from datamodel.model import RESERVED_NAMES

    public = {
        name
        for base in (ModelBase, DataModel)
        for name in [*vars(base), *base.__annotations__]
        if not name.startswith("_")
    }
    assert public <= RESERVED_NAMES and {"objects", "hooks", "changes"} <= public


@pytest.mark.parametrize("name", ["a__b", "colour__", "in__stock__count"])
def test_a_field_name_containing_a_double_underscore_is_refused(name: str) -> None:
    # filter(a__b=...) would read it as field 'a', lookup 'b'
    with pytest.raises(DeclarationError, match=f"Widget: field name '{name}' contains '__'"):
        declare(BASE, **{name: fields.String()})


def test_field_declaration_errors() -> None:
    with pytest.raises(TypeError, match="mutable default"):
        fields.Array(default=[])
    with pytest.raises(TypeError, match="either default or default_factory"):
        fields.String(default="a", default_factory=str)
    with pytest.raises(TypeError, match="at least one choice"):
        fields.Choice([])


def test_defaults_and_built_ins() -> None:
    model = declare({**BASE, "sync_fields": ["colour"]}, colour=fields.String())
    meta = model._meta
    assert meta.name == "WIDGET" and meta.table == "widget_meta"
    assert meta.pk_name == "id" and meta.key_pattern == "widget:{id}"
    assert meta.kv_class == "WIDGET" and meta.namespace == "NIMBUS_WIDGETS"
    assert list(meta.fields) == [
        "id",
        "colour",
        "user_id",
        "created_at",
        "updated_at",
        "deleted_at",
        "_auth",
        "_version",
    ]
    assert meta.sync_fields == [
        "id",
        "colour",
        "user_id",
        "created_at",
        "updated_at",
        "deleted_at",
        "_auth",
        "_version",
    ]
    assert meta.ordering == ("-created_at",)
    assert meta.indexes == [("user_id", "created_at", "id"), ("created_at", "id")]


def test_options_turn_built_ins_off() -> None:
    model = declare(
        {**BASE, "timestamps": False, "soft_delete": False, "user_tracking": False, "auth": False}
    )
    assert list(model._meta.fields) == ["id", "_version"]
    assert model._meta.ordering == ("id",)
    assert model._meta.indexes == [("id",)]


def test_short_namespace_names_follow_the_spec() -> None:
    model = declare({"namespace": "PAGES", "name": "WIDGET", "table": "w"})
    assert model._meta.namespace == "NIMBUS_PAGES"


def test_models_are_registered_and_names_must_be_unique() -> None:
    from tests.datamodel.models import Page

    assert registry.get("WEBPAGE") is Page
    with pytest.raises(DeclarationError, match="model name 'WEBPAGE' is used by both"):
        type(
            "Other",
            (DataModel,),
            {"Meta": type("Meta", (), {"name": "WEBPAGE", "table": "o", **BASE})},
        )
    with pytest.raises(DeclarationError, match="both use table 'webpage_meta'"):
        type(
            "Other",
            (DataModel,),
            {"Meta": type("Meta", (), {"name": "OTHER", "table": "webpage_meta", **BASE})},
        )
    registry.unregister("OTHER")


@pytest.mark.parametrize(
    ("declared", "meta", "message"),
    [
        ({"body": fields.Text(unique=True)}, {}, "unique field 'body' is of type text"),
        ({"a": fields.String()}, {"unique_together": [("a", "nope")]}, "'nope' does not exist"),
        ({"a": fields.String()}, {"unique_together": [("a", "a")]}, "repeats a field"),
        ({"a": fields.String(unique=True)}, {"unique_together": [("a",)]}, "declared twice"),
        ({"a": fields.String(release_on_delete=True)}, {}, "needs unique=True"),
        ({"a": fields.String()}, {"unique_together": "a"}, "list of tuples"),
    ],
)
def test_unique_declarations_are_checked(declared, meta, message) -> None:
    options = {"name": "UNIQUECHECK", "namespace": "NIMBUS_NOTES", **meta}
    attrs = {**declared, "Meta": type("Meta", (), options)}
    with pytest.raises(DeclarationError, match=message):
        type("UniqueCheck", (DataModel,), attrs)
