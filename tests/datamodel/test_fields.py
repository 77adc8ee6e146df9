"""Field validation and conversion."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest

from datamodel import Connection, DataModel, ValidationError, create_tables, fields, registry
from datastore import Datastore, Routing
from datastore.backends.memory import MemoryKVStore, MemorySQLDatabase
from datastore.routing import DEFAULT_CLASS_NAMESPACES
from tests.datamodel.models import Page


def test_values_are_validated_with_field_level_messages() -> None:
    page = Page(project_id="p", url="https://example.com")
    cases = {
        "url": "not a url",
        "status": "done",
        "priority": "high",
        "score": float("nan"),
        "archived": "yes",
        "tags": "seo",
        "title": "x" * 201,
        "last_processed": "yesterday",
        "nope": 1,
        "_version": 9,
        "created_at": "2024-01-01T00:00:00Z",
    }
    with pytest.raises(ValidationError) as info:
        page.set(cases)
    assert set(info.value.errors) == set(cases)
    assert "not a valid http(s) URL" in info.value.errors["url"][0]
    assert "is not one of" in info.value.errors["status"][0]
    assert "unknown field" in info.value.errors["nope"][0]
    assert "managed" in info.value.errors["_version"][0]
    assert page.get("status") == "pending"  # nothing was applied


def test_required_fields() -> None:
    page = Page()
    with pytest.raises(ValidationError) as info:
        page.full_clean()
    assert {"project_id", "url", "page_id", "user_id"} <= set(info.value.errors)


def test_conversions() -> None:
    moment = dt.datetime(2024, 9, 2, 15, 45, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    page = Page(
        project_id="p",
        url="https://example.com",
        priority=3.0,
        last_processed=moment,
        extracted_data={"when": moment, "items": (1, 2)},
    )
    assert page.get("priority") == 3
    assert page.get("last_processed") == "2024-09-02T13:45:00.000Z"
    assert page.get("extracted_data") == {"when": "2024-09-02T13:45:00.000Z", "items": [1, 2]}
    page.set("last_processed", "2024-09-02T13:45:00+00:00")
    assert page.get("last_processed") == "2024-09-02T13:45:00.000Z"


def test_defaults_are_not_shared() -> None:
    first, second = Page(), Page()
    first.get("tags").append("x")
    assert second.get("tags") == []


def declare(**model_fields: Any) -> type[DataModel]:
    """A throwaway model (not left in the registry)."""
    attrs = {**model_fields, "Meta": type("Meta", (), {"namespace": "NIMBUS_WIDGETS"})}
    try:
        return type("Widget", (DataModel,), attrs)
    finally:
        registry.unregister("WIDGET")


def connect(model: type[DataModel]) -> Connection:
    sql = MemorySQLDatabase()
    routes = {**DEFAULT_CLASS_NAMESPACES, model._meta.kv_class: model._meta.namespace}
    create_tables(sql, [model])
    return Connection(Datastore(MemoryKVStore(), sql=sql, routing=Routing(classes=routes)), sql)


def test_a_callable_default_is_called_for_each_new_instance_and_saved() -> None:
    numbers = itertools.count(1)
    model = declare(
        number=fields.Integer(default=lambda: next(numbers)),
        labels=fields.Array(of=fields.String(), default=list),
        extra=fields.JSON(default_factory=dict),
    )
    first, second = model(), model()
    assert (first.get("number"), second.get("number")) == (1, 2)
    first.get("labels").append("x")
    assert second.get("labels") == [] and second.get("extra") == {}
    widgets = model.objects.auth("u1", using=connect(model))
    saved = widgets.create()
    assert widgets.get(saved.pk).get("number") == 3


def test_a_value_given_for_a_field_means_its_callable_default_is_not_called() -> None:
    calls: list[str] = []

    def seven() -> int:
        calls.append("seven")
        return 7

    model = declare(number=fields.Integer(default=seven))
    assert model(number=2).get("number") == 2 and calls == []
    assert model().get("number") == 7 and calls == ["seven"]


def test_what_a_callable_default_returns_is_cleaned() -> None:
    moment = dt.datetime(2024, 9, 2, 13, 45, tzinfo=dt.UTC)
    model = declare(
        due=fields.Timestamp(default=lambda: moment),
        count=fields.Integer(default_factory=lambda: 4.0),
    )
    widget = model()
    assert widget.get("due") == "2024-09-02T13:45:00.000Z"
    assert widget.get("count") == 4 and isinstance(widget.get("count"), int)


def test_a_bad_value_from_a_callable_default_is_a_validation_error_naming_the_field() -> None:
    # not checked at declaration: a callable default may depend on the moment it runs
    model = declare(
        priority=fields.Integer(default=lambda: "high"),
        status=fields.Choice(["a", "b"], default_factory=lambda: "c"),
    )
    with pytest.raises(ValidationError) as info:
        model()
    assert info.value.errors == {
        "priority": ["default 'high' is invalid: expected an integer, got 'high'"],
        "status": ["default 'c' is invalid: 'c' is not one of 'a', 'b'"],
    }
    assert model(priority=1, status="a").get("priority") == 1


def test_an_omit_none_field_is_left_out_of_the_stored_object_while_it_is_none() -> None:
    # a TypeScript interface's optional field (`result?: {...}`) is absent, never null
    model = declare(result=fields.JSON(omit_none=True), note=fields.String())
    connection = connect(model)
    widgets = model.objects.auth("u1", using=connection)

    def stored(widget: DataModel) -> dict[str, Any]:
        found = connection.datastore.system().get(model._meta.kv_class, widget.kv_id)
        assert found is not None
        return found

    widget = widgets.create()
    assert "result" not in stored(widget) and stored(widget)["note"] is None
    widget.set("result", {"changes": 3})
    widget.save()
    assert stored(widget)["result"] == {"changes": 3}
    widget.set("result", None)
    widget.save()
    assert "result" not in stored(widget)
    assert widgets.get(widget.pk).get("result") is None
    many = widgets.bulk_create([{}, {"result": [1]}])
    assert "result" not in stored(many[0]) and stored(many[1])["result"] == [1]
    with pytest.raises(TypeError, match="omit_none"):
        fields.JSON(omit_none=True, required=True)
