"""Django's own session and cache test suites, run against ``nimbus.sessions.SessionStore`` and
``nimbus.cache.KVCache`` on the memory, SQLite and Redis KV stores.

``SessionTestsMixin`` and ``BaseCacheTests`` are copied unchanged from the pinned Django's source
package into ``tests/nimbus/django_suites`` (the wheel does not ship Django's tests). Each test
there passes, or is a documented difference: listed once in ``DIFFERENCES`` below with its reason,
skipped with that reason, and listed in the README's cache and sessions section.

Memory and SQLite run on a fake clock, so the cache suite's ``time.sleep`` moves that clock
instead of waiting; on Redis, whose keys expire on the server's clock, it sleeps.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import types
import unittest
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from unittest import mock

from django.conf import settings as django_settings
from django.db import connection
from django.test import SimpleTestCase, TestCase, override_settings

from nimbus import conf
from nimbus.sessions import SessionStore
from tests.nimbus.django_suites import cache as cache_suite
from tests.nimbus.django_suites.cache import BaseCacheTests, caches_setting_for_tests
from tests.nimbus.django_suites.models import Poll
from tests.nimbus.django_suites.sessions import SessionTestsMixin
from tests.support import Backend, make_kv

# (suite, test name): why it does not apply to a KV store. Empty: every test passes.
DIFFERENCES: dict[tuple[str, str], str] = {}

README = Path(__file__).resolve().parents[2] / "README.md"
Case = TypeVar("Case", bound=type)


def with_differences(suite: str) -> Callable[[Case], Case]:
    """Skip the suite's tests listed in ``DIFFERENCES``, with their reasons."""

    def decorate(cls: Case) -> Case:
        for (name, test), reason in DIFFERENCES.items():
            if name == suite:
                setattr(cls, test, unittest.skip(reason)(getattr(cls, test)))
        return cls

    return decorate


if TYPE_CHECKING:
    from django.test import TestCase as MixinBase
else:
    MixinBase = object  # not a TestCase: pytest collects only the classes below that are


class KVStoreCase(MixinBase):
    """Each test on a fresh store of ``kv_backend``, as ``conf.kv_store()``."""

    kv_backend = ""

    def use_store(self) -> Backend:
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory, True)
        backend = make_kv(self.kv_backend, Path(directory))
        self.addCleanup(backend.store.close)
        patcher = mock.patch.object(conf, "kv_store", lambda: backend.store)
        patcher.start()
        self.addCleanup(patcher.stop)
        return backend


# Sessions


class KVSessionTests(KVStoreCase, SessionTestsMixin):
    backend = SessionStore  # type: ignore[assignment]  # None in the mixin

    def setUp(self) -> None:
        self.use_store()
        super().setUp()


@with_differences("sessions")
class TestSessionsOnMemory(KVSessionTests, SimpleTestCase):
    kv_backend = "memory"


@with_differences("sessions")
class TestSessionsOnSQLite(KVSessionTests, SimpleTestCase):
    kv_backend = "sqlite"


@with_differences("sessions")
class TestSessionsOnRedis(KVSessionTests, SimpleTestCase):
    kv_backend = "redis"


# Cache

KV_CACHES = caches_setting_for_tests(BACKEND="nimbus.cache.KVCache", LOCATION="NIMBUS_CACHE")
# The cache suite's Poll model: installed for its instances to unpickle.
SUITE_APPS = [*django_settings.INSTALLED_APPS, "tests.nimbus.django_suites"]


class KVCacheTests(KVStoreCase, BaseCacheTests):
    """The cache suite's ``Poll`` model gets its table for the class (its app is installed only
    for these classes, so the test database has none)."""

    @classmethod
    def setUpClass(cls) -> None:
        with connection.schema_editor() as editor:
            editor.create_model(Poll)
        cls.addClassCleanup(cls._drop_poll_table)
        super().setUpClass()

    @classmethod
    def _drop_poll_table(cls) -> None:
        with connection.schema_editor() as editor:
            editor.delete_model(Poll)

    def setUp(self) -> None:
        backend = self.use_store()
        clock: Any = types.SimpleNamespace(sleep=backend.advance)
        patcher = mock.patch.object(cache_suite, "time", clock)
        patcher.start()
        self.addCleanup(patcher.stop)
        super().setUp()


@override_settings(CACHES=KV_CACHES, INSTALLED_APPS=SUITE_APPS)
@with_differences("cache")
class TestCacheOnMemory(KVCacheTests, TestCase):
    kv_backend = "memory"


@override_settings(CACHES=KV_CACHES, INSTALLED_APPS=SUITE_APPS)
@with_differences("cache")
class TestCacheOnSQLite(KVCacheTests, TestCase):
    kv_backend = "sqlite"


@override_settings(CACHES=KV_CACHES, INSTALLED_APPS=SUITE_APPS)
@with_differences("cache")
class TestCacheOnRedis(KVCacheTests, TestCase):
    kv_backend = "redis"


README_DIFFERENCES = "Documented differences from Django's suites:"


def test_the_readme_lists_the_differences_and_nothing_else() -> None:
    """The README's list (up to the next blank line; "none" when empty) names exactly the
    tests of ``DIFFERENCES``, each with its reason."""
    text = README.read_text()
    assert README_DIFFERENCES in text
    listed = text.split(README_DIFFERENCES, 1)[1].split("\n\n", 1)[0]
    assert set(re.findall(r"`(test_\w+)`", listed)) == {test for _, test in DIFFERENCES}
    flat = " ".join(listed.split())
    for reason in DIFFERENCES.values():
        assert reason in flat
    if not DIFFERENCES:
        assert flat.strip() == "none."


def test_a_listed_difference_is_skipped_with_its_reason(monkeypatch) -> None:
    class Probe(unittest.TestCase):
        def test_simple(self) -> None:
            pass

        def test_other(self) -> None:
            pass

    monkeypatch.setitem(DIFFERENCES, ("cache", "test_simple"), "no such feature in KV")
    monkeypatch.setitem(DIFFERENCES, ("sessions", "test_other"), "another suite's")
    with_differences("cache")(Probe)
    result = unittest.TestResult()
    unittest.defaultTestLoader.loadTestsFromTestCase(Probe).run(result)
    assert [(case.id().rsplit(".", 1)[1], why) for case, why in result.skipped] == [
        ("test_simple", "no such feature in KV")
    ]
