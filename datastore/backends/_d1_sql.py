"""SQL text for D1 over REST: statements counted and placeholders found outside literals,
quoted identifiers and comments, and parameters sent as strings that keep their SQLite types."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import InvalidValue, QueryError, TooLarge

__all__ = [
    "MAX_BOUND_PARAMETERS",
    "MAX_STATEMENT_BYTES",
    "bind_as_strings",
    "check_statement",
    "has_second_statement",
]

MAX_STATEMENT_BYTES = 100_000  # D1's limit on one statement's SQL
MAX_BOUND_PARAMETERS = 100  # and on its parameters


def check_statement(sql: object, params: object) -> tuple[str, Sequence[Any]]:
    """One statement as D1 takes it (over REST or a binding), checked before anything is sent:
    non-empty SQL, a sequence of parameters, one statement, D1's size and parameter limits."""
    if not isinstance(sql, str) or not sql.strip():
        raise QueryError("sql must be a non-empty string")
    if isinstance(params, (str, bytes)) or not isinstance(params, Sequence):
        raise QueryError(f"params must be a sequence (list or tuple), not {type(params)}")
    if has_second_statement(sql):
        raise QueryError(f"one statement at a time: {sql[:120]}")
    size = len(sql.encode("utf-8"))
    if size > MAX_STATEMENT_BYTES:
        raise TooLarge(f"statement is {size} bytes; D1 accepts at most {MAX_STATEMENT_BYTES}")
    if len(params) > MAX_BOUND_PARAMETERS:
        raise QueryError(
            f"statement binds {len(params)} parameters; D1 accepts at most "
            f"{MAX_BOUND_PARAMETERS} per statement: {sql[:120]}"
        )
    return sql, params


def _code(sql: str) -> Iterator[tuple[int, str]]:
    """The characters of ``sql`` that are SQL code, with their index: string literals, quoted
    identifiers and comments are skipped (an unterminated one ends the scan)."""
    index, length = 0, len(sql)
    while index < length:
        char = sql[index]
        if char in "'\"`[":
            close = "]" if char == "[" else char
            index = sql.find(close, index + 1)
            # a doubled quote inside a literal is an escaped quote, not its end
            while index >= 0 and close != "]" and sql.startswith(close, index + 1):
                index = sql.find(close, index + 2)
            if index < 0:
                return
        elif sql.startswith("--", index):
            newline = sql.find("\n", index)
            index = length if newline < 0 else newline
        elif sql.startswith("/*", index):
            end = sql.find("*/", index + 2)
            index = length if end < 0 else end + 1
        else:
            yield index, char
        index += 1


def has_second_statement(sql: str) -> bool:
    """Whether ``sql`` holds more than one statement (a ``;`` followed by more SQL).

    A ``;`` inside a literal, a quoted identifier or a comment does not count. D1 would run
    every statement; the contract, like sqlite3, allows one.
    """
    ended = False
    for _, char in _code(sql):
        if char == ";":
            ended = True
        elif not char.isspace() and ended:
            return True
    return False


_INT64 = range(-(2**63), 2**63)


def _d1_param(value: Any, sql: str) -> tuple[str, str]:
    """How one parameter travels: its text, and the SQL around its placeholder ``{}`` that
    gives it back its SQLite type (Cloudflare's schema types D1 parameters as strings)."""
    if isinstance(value, str):
        return value, "{}"
    if value is None:
        return "", "NULLIF({0}, {0})"  # NULL, still binding the parameter's number
    if isinstance(value, int):  # bool included: 1/0, as sqlite3 binds it
        if value not in _INT64:
            raise InvalidValue(f"integer parameter {value} does not fit SQLite's 64 bits")
        return str(int(value)), "CAST({} AS INTEGER)"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidValue(f"float parameter {value} cannot be sent over the D1 REST API")
        return _exact_real(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise InvalidValue("BLOB parameters cannot be sent over the D1 REST API (JSON only)")
    raise InvalidValue(f"unsupported parameter type {type(value).__name__} in: {sql[:120]}")


def _exact_real(value: float) -> tuple[str, str]:
    """A float as ``mantissa * 2**exponent``: the mantissa (an integer below 2**53) travels as
    text and the SQL scales it by integer powers of two, all exact. (D1's SQLite reads decimal
    text to a REAL off by one unit in the last place for some values, and ``power()`` is not
    authorized there.)"""
    numerator, denominator = value.as_integer_ratio()
    exponent = 1 - denominator.bit_length()  # the denominator is a power of two
    if numerator and denominator == 1:
        shift = (numerator & -numerator).bit_length() - 1
        numerator, exponent = numerator >> shift, shift
    scaling = []
    while exponent:
        step = max(-62, min(62, exponent))
        scaling.append(f" {'*' if step > 0 else '/'} {1 << abs(step)}")
        exponent -= step
    return str(numerator), "(CAST({} AS REAL)" + "".join(scaling) + ")"


def bind_as_strings(sql: str, params: Sequence[Any]) -> tuple[str, list[str]]:
    """``sql`` and ``params`` as Cloudflare's D1 schema takes them: every parameter a string,
    and each placeholder wrapped so the value keeps its SQLite type (``CAST(?2 AS INTEGER)``,
    ``(CAST(?3 AS REAL) / 4)`` for 0.25 sent as ``"1"``, ``NULLIF(?4, ?4)`` for NULL; text is
    bound as it is).

    Placeholders are found outside literals, quoted identifiers and comments, and numbered as
    SQLite numbers them (a bare ``?`` takes one more than the largest number so far); each is
    written back as ``?NNN``, so the numbering does not depend on how many a wrapper holds.
    """
    encoded = [_d1_param(value, sql) for value in params]
    if all(wrapper == "{}" for _, wrapper in encoded):
        return sql, [text for text, _ in encoded]
    pieces: list[str] = []
    copied = 0
    largest = 0
    code = _code(sql)
    for index, char in code:
        if char != "?":
            continue
        end = index + 1
        while end < len(sql) and sql[end].isdigit():
            end += 1
        number = int(sql[index + 1 : end]) if end > index + 1 else largest + 1
        largest = max(largest, number)
        placeholder = f"?{number}"
        if 1 <= number <= len(encoded):
            placeholder = encoded[number - 1][1].format(placeholder)
        pieces.append(sql[copied:index])
        pieces.append(placeholder)
        copied = end
    pieces.append(sql[copied:])
    return "".join(pieces), [text for text, _ in encoded]
