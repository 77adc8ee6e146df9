"""Key formats and validation.

The formats are the ones Workers read, so they must not drift:

* objects: ``{class_lower}:{id}`` (``project:proj_456``, ``page:proj_1:page_abc``)
* lists: ``{list_name}:{pointer}`` (``apiKeys:userId:12345``)
* reservations: ``_unique:{class_lower}:{name}`` (``_unique:user:email:3f2a...``), in the
  class's namespace, holding the JSON id of the object that owns the unique value. Class and
  list names start with a letter, so a reservation key is never an object or list key and
  never appears in a class's ``{class_lower}:`` listing.

An id may be *composite*: several segments joined with ``:``. Each segment is validated on its
own and may not itself contain ``:``, so two different part sequences can never produce the same
key (``composite_key("a:b", "c")`` is refused instead of colliding with ``("a", "b:c")``).

The KV clients (``datastore.cache``) use the kv-clients spec's keys:

* cache entries: ``cache:{feature}:{key}`` (``cache:platform-settings:all``,
  ``cache:content:published:cat-uuid``): a feature is a name with letters, digits, ``_`` or
  ``-``; the key is an id (composite allowed);
* sessions: ``session:{token}``;
* rate limits: ``{key_prefix}{identifier}`` (``rl:login:192.168.1.1``, ``rl:login:::1``).

A session token or rate-limit identifier is *opaque*: it may contain ``:`` (an IPv6 address is
an identifier) because it is always the whole rest of the key, after a fixed prefix, and is
never split. It is stored as given, so a Worker following the spec finds it under the same key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .errors import InvalidKey, TooLarge

__all__ = [
    "MAX_ID_LENGTH",
    "RESERVATION_PREFIX",
    "composite_key",
    "fill_key_template",
    "list_key",
    "object_key",
    "rate_limit_prefix",
    "reservation_key",
    "reservation_prefix",
    "validate_class_name",
    "validate_feature",
    "validate_id",
    "validate_identifier",
    "validate_kv_key",
    "validate_list_name",
    "validate_namespace",
]

MAX_ID_LENGTH = 256
MAX_KEY_BYTES = 512

_NAMESPACE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
# RFC 3986 unreserved characters plus a few that appear in natural ids (emails: @ +).
_SEGMENT = re.compile(r"[A-Za-z0-9._~@+=-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The segment characters plus ':' (IPv6 addresses): see "opaque" in the module docstring.
_OPAQUE = re.compile(r"[A-Za-z0-9._~@+=:-]+")
_FEATURE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_PREFIX = re.compile(r"(?:[A-Za-z0-9_-]+:)+")
MAX_PREFIX_LENGTH = 64
DEFAULT_RATE_LIMIT_SCOPE = "rl"
RESERVATION_PREFIX = "_unique:"


def validate_namespace(name: str) -> str:
    """A namespace is 1-64 letters, digits, ``_`` or ``-`` (so never ``/``, ``:`` or ``*``)."""
    if not isinstance(name, str) or not _NAMESPACE.fullmatch(name):
        raise InvalidKey(
            f"invalid namespace {name!r}: use 1-64 letters, digits, '_' or '-' "
            "(no '/', ':', '*' or spaces)"
        )
    return name


def _identifier(name: str, what: str) -> str:
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise InvalidKey(
            f"invalid {what} {name!r}: must start with a letter and contain only "
            "letters, digits and '_' (max 64 characters)"
        )
    return name


def validate_class_name(name: str) -> str:
    """A class name is an identifier: a letter, then letters, digits or ``_`` (max 64)."""
    return _identifier(name, "class name")


def validate_list_name(name: str) -> str:
    """List names follow the class-name rule (``apiKeys``, ``projects``)."""
    return _identifier(name, "list name")


def _validate_segment(segment: str, what: str, whole: str) -> None:
    if not segment:
        raise InvalidKey(f"invalid {what} {whole!r}: empty segment")
    if segment in (".", ".."):
        raise InvalidKey(f"invalid {what} {whole!r}: '.' and '..' are not allowed as segments")
    if not _SEGMENT.fullmatch(segment):
        raise InvalidKey(
            f"invalid {what} {whole!r}: only letters, digits and . _ ~ @ + = - are allowed "
            "(':' separates composite parts)"
        )


def validate_id(object_id: str, *, what: str = "id") -> str:
    """Validate an object id or list pointer (possibly composite, ``a:b``)."""
    if not isinstance(object_id, str):
        raise InvalidKey(f"invalid {what} {object_id!r}: must be a string")
    if len(object_id) > MAX_ID_LENGTH:
        raise InvalidKey(f"invalid {what}: longer than {MAX_ID_LENGTH} characters")
    for segment in object_id.split(":"):
        _validate_segment(segment, what, object_id)
    return object_id


def validate_identifier(value: str, *, what: str = "identifier") -> str:
    """An opaque session token or rate-limit identifier: 1-256 letters, digits or
    ``. _ ~ @ + = - :`` (so ``192.168.1.1``, ``::1``, ``2001:db8::1``, ``key_abc``)."""
    if not isinstance(value, str):
        raise InvalidKey(f"invalid {what} {value!r}: must be a string")
    if not value:
        raise InvalidKey(f"invalid {what} '': must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidKey(f"invalid {what}: longer than {MAX_ID_LENGTH} characters")
    if _CONTROL.search(value):
        raise InvalidKey(f"invalid {what} {value!r}: control characters are not allowed")
    if not _OPAQUE.fullmatch(value):
        raise InvalidKey(
            f"invalid {what} {value!r}: only letters, digits and . _ ~ @ + = - : are allowed "
            "(no spaces, '/' or other characters)"
        )
    return value


def validate_feature(name: str) -> str:
    """A cache feature: a letter, then letters, digits, ``_`` or ``-`` (max 64):
    ``content``, ``platform-settings``, ``creator-buckets``."""
    if not isinstance(name, str) or not _FEATURE.fullmatch(name):
        raise InvalidKey(
            f"invalid cache feature {name!r}: must start with a letter and contain only "
            "letters, digits, '_' and '-' (max 64 characters; ':' separates it from the key)"
        )
    return name


def rate_limit_prefix(prefix: str) -> str:
    """The start of a rate-limit key. The spec's form is used as given: one or more non-empty
    parts of letters, digits, ``_`` or ``-``, each ending with ``:`` (``rl:login:``). A bare
    name is short for ``rl:{name}:`` (``login`` is ``rl:login:``). At most 64 characters."""
    if isinstance(prefix, str) and ":" not in prefix and _FEATURE.fullmatch(prefix):
        prefix = f"{DEFAULT_RATE_LIMIT_SCOPE}:{prefix}:"
    if (
        not isinstance(prefix, str)
        or len(prefix) > MAX_PREFIX_LENGTH
        or not _PREFIX.fullmatch(prefix)
    ):
        raise InvalidKey(
            f"invalid rate-limit key prefix {prefix!r}: use parts of letters, digits, '_' or "
            "'-', each ending with ':' (like 'rl:login:'), or a bare name ('login' means "
            f"'rl:login:'); at most {MAX_PREFIX_LENGTH} characters"
        )
    return prefix


def composite_key(*parts: str) -> str:
    """Join id parts with ``:`` (``composite_key(project_id, page_id)``).

    Each part must be a single valid segment: a part containing ``:`` is refused because it
    would make two different part sequences produce the same key.
    """
    if not parts:
        raise InvalidKey("composite_key needs at least one part")
    for part in parts:
        if not isinstance(part, str):
            raise InvalidKey(f"invalid composite key part {part!r}: must be a string")
        if ":" in part:
            raise InvalidKey(f"invalid composite key part {part!r}: parts may not contain ':'")
        _validate_segment(part, "composite key part", part)
    joined = ":".join(parts)
    if len(joined) > MAX_ID_LENGTH:  # each part is a valid segment already
        raise InvalidKey(f"invalid id: longer than {MAX_ID_LENGTH} characters")
    return joined


def validate_kv_key(key: str, max_bytes: int = MAX_KEY_BYTES) -> str:
    """The raw-key rule every KV backend applies: non-empty, not ``.``/``..``, no control chars."""
    if not isinstance(key, str) or not key:
        raise InvalidKey(f"invalid key {key!r}: must be a non-empty string")
    if key in (".", ".."):
        raise InvalidKey(f"invalid key {key!r}: '.' and '..' are not allowed")
    if _CONTROL.search(key):
        raise InvalidKey(f"invalid key {key!r}: control characters are not allowed")
    size = len(key.encode("utf-8"))
    if size > max_bytes:
        raise TooLarge(f"key is {size} bytes; the limit is {max_bytes} bytes")
    return key


def object_key(class_name: str, object_id: str) -> str:
    """``{class_lower}:{id}``, validated."""
    validate_class_name(class_name)
    validate_id(object_id)
    return validate_kv_key(f"{class_name.lower()}:{object_id}")


def list_key(list_name: str, pointer: str) -> str:
    """``{list_name}:{pointer}``, validated (the list name keeps its case)."""
    validate_list_name(list_name)
    validate_id(pointer, what="pointer")
    return validate_kv_key(f"{list_name}:{pointer}")


def reservation_prefix(class_name: str) -> str:
    """``_unique:{class_lower}:``: the prefix every reservation of a class starts with."""
    validate_class_name(class_name)
    return f"{RESERVATION_PREFIX}{class_name.lower()}:"


def reservation_key(class_name: str, name: str) -> str:
    """``_unique:{class_lower}:{name}``, validated: ``name`` is a non-empty string without
    whitespace or control characters, and the key fits the 512-byte KV key limit."""
    prefix = reservation_prefix(class_name)
    if not isinstance(name, str) or not name:
        raise InvalidKey(f"invalid reservation name {name!r}: must be a non-empty string")
    if any(char.isspace() for char in name):
        raise InvalidKey(f"invalid reservation name {name!r}: whitespace is not allowed")
    return validate_kv_key(prefix + name)


_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.]+)\}")


def fill_key_template(template: str, record: Mapping[str, Any]) -> str | None:
    """The key ``template`` names for ``record``: each ``{field}`` (a dotted path into nested
    objects) replaced by the record's value; ``None`` if a field is missing, null or not a
    scalar. The gateway Worker fills templates by the same rule (``worker/gateway.js``)."""
    missing = False

    def value(match: re.Match[str]) -> str:
        nonlocal missing
        found: Any = record
        for part in match.group(1).split("."):
            found = found.get(part) if isinstance(found, Mapping) else None
        if found is None or isinstance(found, (dict, list)):
            missing = True
            return ""
        if isinstance(found, bool):
            return "true" if found else "false"
        if isinstance(found, float) and found.is_integer():
            return str(int(found))
        return str(found)

    key = _PLACEHOLDER.sub(value, template)
    return None if missing else key
