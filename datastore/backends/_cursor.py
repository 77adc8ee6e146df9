"""Opaque list cursors for backends that list keys in lexicographic order."""

from __future__ import annotations

import base64
import binascii
import json

from ..errors import InvalidValue

__all__ = ["decode_after_key", "decode_store_cursor", "encode_after_key", "encode_store_cursor"]


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


def encode_store_cursor(prefix: str, store_cursor: str | None) -> str | None:
    """Our cursor for a store's own (Cloudflare KV's), wrapped with the prefix it belongs to
    so that misuse is caught; ``None`` when the store has no more pages."""
    return encode_after_key(json.dumps([prefix, store_cursor])) if store_cursor else None


def decode_store_cursor(cursor: str, prefix: str) -> str:
    """The store's own cursor inside ours; ``InvalidValue`` if it belongs to another prefix."""
    try:
        cursor_prefix, store_cursor = json.loads(decode_after_key(cursor) or "")
    except (ValueError, TypeError) as exc:
        raise InvalidValue(f"invalid list cursor {cursor!r}") from exc
    if cursor_prefix != prefix or not isinstance(store_cursor, str):
        raise InvalidValue(f"list cursor {cursor!r} belongs to another prefix")
    return store_cursor
