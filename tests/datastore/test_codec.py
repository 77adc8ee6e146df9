from __future__ import annotations

import copy
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from datastore import InvalidValue, codec


def test_dumps_is_compact_utf8_json() -> None:
    assert codec.dumps({"a": 1, "b": "żółw"}) == '{"a":1,"b":"żółw"}'.encode()


def test_dates_are_iso_utc() -> None:
    moment = dt.datetime(2024, 9, 2, 15, 45, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert codec.dumps({"t": moment}) == b'{"t":"2024-09-02T13:45:00.123Z"}'
    assert codec.dumps([dt.datetime(2024, 1, 1)]) == b'["2024-01-01T00:00:00.000Z"]'
    assert codec.dumps([dt.date(2024, 1, 2)]) == b'["2024-01-02"]'


def test_other_types() -> None:
    assert codec.dumps([b"\x00\x01", (1, 2), Decimal("2.5"), Decimal("3")]) == (
        b'["AAE=",[1,2],2.5,3]'
    )


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), object(), Decimal("NaN")])
def test_refuses_what_json_cannot_hold(bad: object) -> None:
    with pytest.raises(InvalidValue):
        codec.dumps({"x": bad})


def test_refuses_circular_and_deep_values() -> None:
    circular: list = []
    circular.append(circular)
    with pytest.raises(InvalidValue):
        codec.dumps(circular)
    deep: list = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(InvalidValue, match="deeper than 64"):
        codec.check_depth(deep)
    codec.check_depth([[[1]]])


def test_loads_errors_are_typed() -> None:
    assert codec.loads(b'{"a": [1]}') == {"a": [1]}
    with pytest.raises(InvalidValue):
        codec.loads(b"{not json")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=40,
)


@given(json_values)
def test_copy_value_is_a_deep_copy(value: object) -> None:
    copied = codec.copy_value(value)
    assert copied == copy.deepcopy(value)

    def containers(item: object) -> list[object]:
        found: list[object] = []
        if isinstance(item, dict):
            found = [item, *(c for child in item.values() for c in containers(child))]
        elif isinstance(item, list):
            found = [item, *(c for child in item for c in containers(child))]
        return found

    originals = {id(item) for item in containers(value)}
    assert not originals & {id(item) for item in containers(copied)}  # nothing shared


def test_copy_value_falls_back_to_deepcopy_for_other_types() -> None:
    moment = dt.datetime(2024, 1, 1)
    nested = {"when": [moment], "tags": {"a"}}
    copied = codec.copy_value(nested)
    assert copied == nested and copied["tags"] is not nested["tags"]


def test_depth_limit_counts_leaves_as_a_level() -> None:
    codec.check_depth({"a": [{"b": [1, 2, "x"]}] * 3})
    deep: object = 1
    for _ in range(codec.MAX_DEPTH - 1):
        deep = [deep]
    codec.check_depth(deep)  # 63 lists around a number: 64 levels
    with pytest.raises(InvalidValue, match="deeper than 64"):
        codec.check_depth([deep])
    empty: object = []
    for _ in range(codec.MAX_DEPTH - 1):
        empty = [empty]
    codec.check_depth(empty)  # 64 lists, the innermost empty: 64 levels
    with pytest.raises(InvalidValue, match="deeper than 64"):
        codec.check_depth({"x": empty})


storable = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.datetimes()
    | st.dates()
    | st.binary(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text() | st.integers() | st.booleans(), children, max_size=4)
    ),
    max_leaves=30,
)


@given(storable)
def test_normalize_is_what_the_store_gives_back(value: object) -> None:
    try:
        expected = codec.loads(codec.dumps(value))
    except InvalidValue:
        with pytest.raises(InvalidValue):
            codec.normalize(value)
        return
    assert codec.normalize(value) == expected


def test_normalize_copies_and_keeps_the_depth_limit() -> None:
    value: dict[str, Any] = {"blocks": [{"id": "b1", "tags": ["x"]}], "n": 1.5}
    normalized = codec.normalize(value)
    assert normalized == value
    assert normalized["blocks"] is not value["blocks"]
    assert normalized["blocks"][0]["tags"] is not value["blocks"][0]["tags"]
    deep: object = 1
    for _ in range(codec.MAX_DEPTH - 1):
        deep = [deep]
    assert codec.normalize(deep) == deep  # 64 levels
    with pytest.raises(InvalidValue, match="deeper than 64"):
        codec.normalize([deep])
    with pytest.raises(InvalidValue):
        codec.normalize({"x": float("nan")})
    circular: list[object] = []
    circular.append(circular)
    with pytest.raises(InvalidValue):
        codec.normalize(circular)
