"""nimbus_backup: sessions and caches left out unless asked for, private files, no silent
overwrite; nimbus_restore: sessions and caches in the target are not data to protect."""

from __future__ import annotations

import gzip
import json
import os
import stat
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError

from datastore import RateLimiterClient
from nimbus import conf
from nimbus.models import User
from nimbus.sessions import SessionStore


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def kv_keys(path: Path) -> set[tuple[str, str]]:
    """The (namespace, key) of every KV record in a backup file."""
    with gzip.open(path, "rt") as lines:
        records = [json.loads(line) for line in lines]
    return {(record["ns"], record["k"]) for record in records if record["t"] == "kv"}


@pytest.fixture
def umask_zero() -> Iterator[None]:
    """No umask: a file's mode is exactly what its creator asked for."""
    previous = os.umask(0)
    yield
    os.umask(previous)


@pytest.fixture
def store_with_sessions_and_cache(domain: None) -> dict[str, tuple[str, str]]:
    """A user, a signed-in session, a cached value and a rate-limit counter."""
    User.objects.system().create(email="a@example.com")
    session = SessionStore()
    session["seen"] = True
    session.save()
    cache.set("greeting", "hello", 300)
    RateLimiterClient(conf.kv_store()).check_limit("203.0.113.7", 5, 60, key_prefix="rl:login:")
    found = {
        (namespace, key)
        for namespace in conf.kv_store().namespaces()
        for key in conf.kv_store().list(namespace).keys
    }
    named = {
        "session": ("NIMBUS_SESSIONS", f"session:{session.session_key}"),
        "counter": ("NIMBUS_CACHE", "rl:login:203.0.113.7"),
    }
    named["cached"] = next(item for item in found if item[1].endswith(":greeting"))
    named["user"] = next(item for item in found if item[0] == "NIMBUS_USERS")
    assert set(named.values()) <= found
    return named


def test_sessions_and_cache_are_left_out_by_default(
    tmp_path: Path, store_with_sessions_and_cache: dict[str, tuple[str, str]]
) -> None:
    keys = store_with_sessions_and_cache
    path = tmp_path / "plain.jsonl.gz"
    assert "(without sessions and cache)" in run("nimbus_backup", str(path))
    saved = kv_keys(path)
    assert keys["user"] in saved
    assert not {namespace for namespace, _ in saved} & {"NIMBUS_SESSIONS", "NIMBUS_CACHE"}

    with_sessions = tmp_path / "sessions.jsonl.gz"
    report = json.loads(run("nimbus_backup", str(with_sessions), "--include-sessions", "--json"))
    assert report["left_out"] == ["cache"]
    saved = kv_keys(with_sessions)
    assert keys["session"] in saved and keys["user"] in saved
    assert not {namespace for namespace, _ in saved} & {"NIMBUS_CACHE"}

    everything = tmp_path / "all.jsonl.gz"
    run("nimbus_backup", str(everything), "--include-sessions", "--include-cache")
    assert set(keys.values()) <= kv_keys(everything)


@pytest.mark.usefixtures("umask_zero")
def test_backup_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "nimbus.jsonl.gz"
    run("nimbus_backup", str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.usefixtures("umask_zero")
def test_an_existing_file_is_refused_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / "nimbus.jsonl.gz"
    path.write_bytes(b"an older backup")
    path.chmod(0o644)
    with pytest.raises(CommandError, match=r"nimbus\.jsonl\.gz already exists.*--force"):
        run("nimbus_backup", str(path))
    assert path.read_bytes() == b"an older backup"
    assert "Backed up" in run("nimbus_backup", str(path), "--force")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with gzip.open(path, "rt") as lines:
        assert json.loads(next(lines))["format"] == "nimbus-backup"
    assert os.listdir(tmp_path) == ["nimbus.jsonl.gz"]  # no temporary file left behind


def test_restore_is_not_blocked_by_sessions_and_cache_in_the_target(
    tmp_path: Path, settings, store_with_sessions_and_cache: dict[str, tuple[str, str]]
) -> None:
    path = tmp_path / "nimbus.jsonl.gz"
    run("nimbus_backup", str(path))
    settings.NIMBUS = {  # a fresh target, where someone signed in and was counted
        "KV": {"BACKEND": "datastore.backends.memory.MemoryKVStore"},
        "D1": {"BACKEND": "datastore.backends.memory.MemorySQLDatabase"},
    }
    session = SessionStore()
    session["seen"] = True
    session.save()
    RateLimiterClient(conf.kv_store()).check_limit("198.51.100.1", 5, 60)
    report = json.loads(run("nimbus_restore", str(path), "--json"))
    assert report["kv_keys"] >= 1
    assert conf.sql_database().execute("SELECT email FROM user_meta") == [
        {"email": "a@example.com"}
    ]
    with pytest.raises(CommandError, match="already holds data"):
        run("nimbus_restore", str(path))


def test_a_cache_sharing_a_model_namespace_is_refused(tmp_path: Path, settings) -> None:
    settings.CACHES = {"default": {"BACKEND": "nimbus.cache.KVCache", "LOCATION": "NIMBUS_USERS"}}
    with pytest.raises(CommandError, match="NIMBUS_USERS also holds USER objects"):
        run("nimbus_backup", str(tmp_path / "nimbus.jsonl.gz"))
    assert "Backed up" in run("nimbus_backup", str(tmp_path / "nimbus.jsonl.gz"), "--include-cache")
