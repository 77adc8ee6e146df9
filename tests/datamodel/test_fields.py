"""Field validation and conversion."""

from __future__ import annotations

import datetime as dt

import pytest

from datamodel import ValidationError
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
