from __future__ import annotations

import pytest

from datastore import InvalidKey, TooLarge, composite_key, list_key, object_key
from datastore.keys import validate_id, validate_kv_key, validate_namespace


def test_object_and_list_key_formats() -> None:
    assert object_key("PROJECT", "proj_456") == "project:proj_456"
    assert object_key("Page", "proj_1:page_2") == "page:proj_1:page_2"
    assert list_key("apiKeys", "userId:12345") == "apiKeys:userId:12345"
    assert object_key("EMAIL", "john.doe+x@example.com") == "email:john.doe+x@example.com"


def test_composite_keys_cannot_collide() -> None:
    assert composite_key("a", "b", "c") == "a:b:c"
    with pytest.raises(InvalidKey):
        composite_key("a:b", "c")
    with pytest.raises(InvalidKey):
        composite_key("a", "")
    with pytest.raises(InvalidKey):
        composite_key()


@pytest.mark.parametrize(
    "bad", ["", ":", "a:", ":a", "a::b", ".", "a:..", "a b", "a/b", "a*", "é", "a\x00", "x" * 257]
)
def test_invalid_ids(bad: str) -> None:
    with pytest.raises(InvalidKey):
        validate_id(bad)


@pytest.mark.parametrize("bad", ["", "a/b", "a:b", "a*b", "a b", "x" * 65])
def test_invalid_namespaces(bad: str) -> None:
    with pytest.raises(InvalidKey):
        validate_namespace(bad)


def test_raw_key_limits() -> None:
    assert validate_kv_key("k" * 512) == "k" * 512
    with pytest.raises(TooLarge, match="513 bytes"):
        validate_kv_key("k" * 513)
    with pytest.raises(InvalidKey):
        validate_kv_key("tab\there")
