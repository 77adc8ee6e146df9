"""The cursor codec refuses values no cursor carries, before they reach the database as bound
parameters (where a dict, a list, an integer beyond 64 bits or a lone surrogate would fail)."""

from __future__ import annotations

import base64
import json

import pytest

from datamodel import ValidationError
from datamodel.query.pagination import decode_cursor, encode_cursor


def cursor_of(values: list[object]) -> str:
    raw = json.dumps([["-created_at", "page_id"], values])  # ASCII: a lone \ud800 stays
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -(2**63),
        2**63 - 1,
        1.5,
        "2024-01-01T00:00:00.000Z",
        "résumé 🙂",
    ],
)
def test_column_values_round_trip(value: object) -> None:
    cursor = encode_cursor(["-priority", "page_id"], [value, "page_1"])
    assert decode_cursor(cursor) == (["-priority", "page_id"], [value, "page_1"])


@pytest.mark.parametrize(
    "value",
    [{"a": 1}, [1], 2**63, -(2**63) - 1, 10**40, float("inf"), float("nan"), "\ud800", "a\udfff"],
)
def test_values_no_cursor_carries_are_a_validation_error(value: object) -> None:
    with pytest.raises(ValidationError, match="cursor"):
        decode_cursor(cursor_of([value, "page_1"]))
