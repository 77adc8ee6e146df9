"""Argument checks shared by every KV backend, run before anything is sent to a store."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..contract import BatchItem, DeleteItem, KVLimits, Metadata, PutItem
from ..errors import InvalidValue, NotSupported, TooLarge
from ..keys import validate_kv_key, validate_namespace

__all__ = [
    "PreparedDelete",
    "PreparedItem",
    "PreparedPut",
    "check_batch_size",
    "check_list_args",
    "prepare_put",
    "prepare_puts",
    "validate_keys",
]


class PreparedPut:
    """A validated write: value as bytes, metadata as JSON text (or ``None``)."""

    __slots__ = ("if_version", "key", "metadata", "metadata_json", "ttl", "value")

    def __init__(
        self,
        key: str,
        value: bytes,
        ttl: float | None,
        metadata: dict[str, Any] | None,
        metadata_json: str | None,
        if_version: int | None,
    ) -> None:
        self.key = key
        self.value = value
        self.ttl = ttl
        self.metadata = metadata
        self.metadata_json = metadata_json
        self.if_version = if_version


class PreparedDelete:
    """A validated delete of a batch (see ``contract.DeleteItem``)."""

    __slots__ = ("if_version", "key")

    def __init__(self, key: str, if_version: int | None) -> None:
        self.key = key
        self.if_version = if_version


PreparedItem = PreparedPut | PreparedDelete


def _check_if_version(if_version: int | None, supports_cas: bool) -> None:
    if if_version is not None:
        if not supports_cas:
            raise NotSupported("this backend has no compare-and-set; if_version is unsupported")
        if isinstance(if_version, bool) or not isinstance(if_version, int) or if_version < 0:
            raise InvalidValue(f"if_version must be an int >= 0, not {if_version!r}")


def _encode_metadata(metadata: Metadata | None, limits: KVLimits) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise InvalidValue(f"metadata must be a dict, not {type(metadata).__name__}")
    try:
        text = json.dumps(metadata, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidValue(f"metadata is not JSON-serializable: {exc}") from exc
    size = len(text.encode("utf-8"))
    if size > limits.max_metadata_bytes:
        raise TooLarge(
            f"metadata is {size} bytes serialized; the limit is {limits.max_metadata_bytes} bytes"
        )
    return text


def prepare_put(
    key: str,
    value: bytes | str,
    *,
    ttl: float | None,
    metadata: Metadata | None,
    if_version: int | None,
    limits: KVLimits,
    supports_cas: bool,
) -> PreparedPut:
    """Validate one write against ``limits``; raises before any I/O."""
    validate_kv_key(key, limits.max_key_bytes)
    if isinstance(value, str):
        value = value.encode("utf-8")
    elif isinstance(value, (bytearray, memoryview)):
        value = bytes(value)
    elif not isinstance(value, bytes):
        raise InvalidValue(f"value must be bytes or str, not {type(value).__name__}")
    if len(value) > limits.max_value_bytes:
        raise TooLarge(
            f"value for key {key!r} is {len(value)} bytes; "
            f"the limit is {limits.max_value_bytes} bytes"
        )
    if ttl is not None:
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl != ttl:
            raise InvalidValue(f"ttl must be a number of seconds, not {ttl!r}")
        if ttl < limits.min_ttl_seconds:
            raise InvalidValue(
                f"ttl {ttl!r}s is below this backend's minimum of {limits.min_ttl_seconds}s"
            )
    _check_if_version(if_version, supports_cas)
    metadata_json = _encode_metadata(metadata, limits)
    return PreparedPut(
        key, value, ttl, dict(metadata) if metadata is not None else None, metadata_json, if_version
    )


def prepare_puts(
    namespace: str, items: Sequence[BatchItem], limits: KVLimits, supports_cas: bool
) -> list[PreparedItem]:
    """Validate a whole batch of puts and deletes; nothing is written if any item is bad or a
    key appears twice (a put and a delete of one key included)."""
    validate_namespace(namespace)
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise InvalidValue(f"put_many takes a sequence of items, not {type(items).__name__}")
    check_batch_size(len(items), limits.max_batch_write, "put_many")
    prepared: list[PreparedItem] = []
    for item in items:
        if isinstance(item, PutItem):
            prepared.append(
                prepare_put(
                    item.key,
                    item.value,
                    ttl=item.ttl,
                    metadata=item.metadata,
                    if_version=item.if_version,
                    limits=limits,
                    supports_cas=supports_cas,
                )
            )
        elif isinstance(item, DeleteItem):
            validate_kv_key(item.key, limits.max_key_bytes)
            _check_if_version(item.if_version, supports_cas)
            prepared.append(PreparedDelete(item.key, item.if_version))
        else:
            raise InvalidValue(
                f"put_many items are PutItem or DeleteItem, not {type(item).__name__}"
            )
    if len({item.key for item in prepared}) != len(prepared):
        raise InvalidValue("put_many: the same key appears more than once in one batch")
    return prepared


def validate_keys(namespace: str, keys: Sequence[str], limits: KVLimits, max_count: int) -> None:
    validate_namespace(namespace)
    if isinstance(keys, str):
        raise InvalidValue("expected a sequence of keys, got a single string")
    check_batch_size(len(keys), max_count, "batch")
    for key in keys:
        validate_kv_key(key, limits.max_key_bytes)


def check_batch_size(count: int, maximum: int, what: str) -> None:
    if count > maximum:
        raise TooLarge(f"{what} of {count} items is over this backend's limit of {maximum}")


def check_list_args(namespace: str, prefix: str, limit: int, limits: KVLimits) -> None:
    """The checks every backend's ``list`` makes before reaching its store."""
    validate_namespace(namespace)
    if not isinstance(prefix, str):
        raise InvalidValue(f"prefix must be a string, not {type(prefix).__name__}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidValue(f"limit must be a positive int, not {limit!r}")
    if limit > limits.max_list_limit:
        raise InvalidValue(f"limit {limit} is over the maximum of {limits.max_list_limit}")
    if limit < limits.min_list_limit:
        raise InvalidValue(
            f"limit {limit} is under this backend's minimum of {limits.min_list_limit}"
        )
