from __future__ import annotations

import pytest

from datastore import InvalidKey, TooLarge, composite_key, list_key, object_key
from datastore.keys import (
    reservation_key,
    reservation_prefix,
    validate_id,
    validate_kv_key,
    validate_namespace,
)


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


def test_reservation_keys_never_meet_object_or_list_keys() -> None:
    assert reservation_key("USER", "email:3f2a") == "_unique:user:email:3f2a"
    assert (
        reservation_key("Batch", "project_id+batch_id:9c") == "_unique:batch:project_id+batch_id:9c"
    )
    assert reservation_key("USER", "é@x") == "_unique:user:é@x"
    assert reservation_prefix("USER") == "_unique:user:"
    key = reservation_key("USER", "u1")
    assert not key.startswith(object_key("USER", "u1").split(":")[0] + ":")
    with pytest.raises(InvalidKey):
        object_key("_unique", "x")  # no class can own the reservation prefix
    with pytest.raises(InvalidKey):
        list_key("_unique", "x")


@pytest.mark.parametrize("bad", ["", "a b", "tab\there", "new\nline", "nbsp\u00a0", "nul\x00"])
def test_invalid_reservation_names(bad: str) -> None:
    with pytest.raises(InvalidKey):
        reservation_key("USER", bad)


def test_reservation_keys_fit_the_key_limit() -> None:
    room = 512 - len("_unique:user:")
    assert len(reservation_key("USER", "n" * room)) == 512
    with pytest.raises(TooLarge):
        reservation_key("USER", "n" * (room + 1))
    with pytest.raises(InvalidKey):
        reservation_key("1USER", "n")
    with pytest.raises(InvalidKey):
        reservation_key("USER", 5)  # type: ignore[arg-type]


def test_kv_client_key_parts() -> None:
    from datastore.keys import rate_limit_prefix, validate_feature, validate_identifier

    for ip in ("::1", "2001:db8::1", "::ffff:192.0.2.1", "192.168.1.1"):
        assert validate_identifier(ip) == ip
    assert rate_limit_prefix("rl:login:") == "rl:login:"
    assert rate_limit_prefix("login") == "rl:login:"
    assert rate_limit_prefix("rl:password-reset:") == "rl:password-reset:"
    assert validate_feature("platform-settings") == "platform-settings"
    with pytest.raises(InvalidKey, match="control characters"):
        validate_identifier("1.2.3.4\r\n")
    with pytest.raises(InvalidKey, match="must not be empty"):
        validate_identifier("")
    with pytest.raises(InvalidKey, match="longer than 256"):
        validate_identifier("1" * 257)
    with pytest.raises(InvalidKey, match="ending with ':'"):
        rate_limit_prefix("rl:login")
