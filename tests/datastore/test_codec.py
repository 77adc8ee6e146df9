from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

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
