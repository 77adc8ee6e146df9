"""Opaque list cursors for backends that list keys in lexicographic order."""

from __future__ import annotations

import base64
import binascii

from ..errors import InvalidValue

__all__ = ["decode_after_key", "encode_after_key"]


def encode_after_key(key: str) -> str:
    """A cursor meaning "continue after ``key``"."""
    return base64.urlsafe_b64encode(key.encode("utf-8")).decode("ascii")


def decode_after_key(cursor: str | None) -> str | None:
    """The key a cursor continues after (``None`` for the first page)."""
    if cursor is None or cursor == "":
        return None
    try:
        return base64.urlsafe_b64decode(cursor.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise InvalidValue(f"invalid list cursor {cursor!r}") from exc
