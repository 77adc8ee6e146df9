"""API-key usage counters: recorded in memory by authentication, written in batches."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from rest_framework.test import APIClient

from datamodel import clock
from datamodel.manager import ScopedManager
from datastore import Unavailable
from nimbus import conf, key_usage
from nimbus.key_usage import Counts, UsageRecorder, updated_usage
from nimbus.models import ApiKey, key_hash
from tests.nimbus.api_support import ApiUser, api_user, make_project

pytestmark = pytest.mark.usefixtures("domain")


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The time requests are recorded at: set ``now[0]``."""
    moment = ["2024-09-02T13:45:00.000Z"]
    monkeypatch.setattr(clock, "now_iso", lambda: moment[0])
    return moment


def stored(user: ApiUser) -> ApiKey:
    return ApiKey.objects.system().get(key_hash(user.secret), include_deleted=True)


def usage(user: ApiUser) -> tuple[int, int, str | None]:
    key = stored(user)
    counters = key.get("usage")
    return counters["requests_total"], counters["requests_today"], key.get("last_used")


def get_me(user: ApiUser | APIClient) -> None:
    client = user.client if isinstance(user, ApiUser) else user
    assert client.get("/api/me/").status_code == 200


def test_requests_with_a_key_are_counted_by_a_flush(settings, now: list[str]) -> None:
    settings.NIMBUS_KEY_USAGE_FLUSH_SECONDS = 3600
    alice = api_user("alice")
    for second in range(5):
        now[0] = f"2024-09-02T13:45:0{second}.000Z"
        get_me(alice)
    assert usage(alice) == (0, 0, None)  # nothing written while requests are served
    assert key_usage.flush() == 1
    assert usage(alice) == (5, 5, "2024-09-02T13:45:04.000Z")
    assert key_usage.pending() == {}
    assert key_usage.flush() == 0  # nothing left to write
    rows = alice.client.get("/api/keys/").json()["data"]  # the metadata rows
    assert [row["last_used"] for row in rows] == ["2024-09-02T13:45:04.000Z"]


def test_counters_add_no_round_trip_to_a_request_until_the_interval_is_reached(
    settings,
) -> None:
    settings.NIMBUS_KEY_USAGE_FLUSH_SECONDS = 3600
    alice = api_user("alice")
    project = make_project(alice)
    kv, sql = conf.kv_store().round_trips, conf.sql_database().round_trips

    def read() -> tuple[int, int]:
        with kv.track() as kv_delta, sql.track() as sql_delta:
            response = alice.client.get(f"/api/projects/{project}/")
        assert response.status_code == 200
        return kv_delta.count, sql_delta.count

    # apikey:{hash}, user:{user_id}, the throttle's counter, project:{id}: the counters add none
    assert [read() for _ in range(3)] == [(4, 0)] * 3
    assert key_usage.pending()[key_hash(alice.secret)].total == 4  # with the project's creation
    settings.NIMBUS_KEY_USAGE_FLUSH_SECONDS = 0
    # after the response: the key read again and written (KV object and metadata row) once
    assert read() == (4 + 2, 1)
    assert key_usage.pending() == {}
    assert usage(alice)[:2] == (5, 5)


def test_a_new_utc_day_starts_requests_today_again(settings, now: list[str]) -> None:
    settings.NIMBUS_KEY_USAGE_FLUSH_SECONDS = 3600
    alice = api_user("alice")
    now[0] = "2024-09-02T23:59:58.000Z"
    get_me(alice)
    get_me(alice)
    key_usage.flush()
    assert usage(alice) == (2, 2, "2024-09-02T23:59:58.000Z")
    now[0] = "2024-09-02T23:59:59.000Z"
    get_me(alice)
    now[0] = "2024-09-03T00:00:01.000Z"  # midnight passes between two flushed requests
    get_me(alice)
    get_me(alice)
    key_usage.flush()
    assert usage(alice) == (5, 2, "2024-09-03T00:00:01.000Z")
    now[0] = "2024-09-03T08:00:00.000Z"
    get_me(alice)
    key_usage.flush()
    assert usage(alice) == (6, 3, "2024-09-03T08:00:00.000Z")


def test_requests_of_an_earlier_day_than_the_stored_one_count_only_in_the_total() -> None:
    # another process wrote a later day's requests first
    counts = Counts(total=2, last_used="2024-09-02T23:59:59.000Z", day_count=2)
    stored_usage = {"requests_today": 7, "requests_total": 40}
    new_usage, last_used = updated_usage(stored_usage, "2024-09-03T00:00:05.000Z", counts)
    assert new_usage == {"requests_today": 7, "requests_total": 42}
    assert last_used == "2024-09-03T00:00:05.000Z"
    assert updated_usage(None, None, counts) == (
        {"requests_today": 2, "requests_total": 2},
        "2024-09-02T23:59:59.000Z",
    )


def test_two_threads_authenticating_with_flushes_after_every_request_lose_no_counts(
    settings,
) -> None:
    settings.NIMBUS_KEY_USAGE_FLUSH_SECONDS = 0
    alice = api_user("alice")
    per_thread = 25
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def work() -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {alice.secret}")
        start.wait()
        try:
            for _ in range(per_thread):
                get_me(client)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert key_usage.pending() == {}  # every request's finish flushed
    assert usage(alice)[:2] == (2 * per_thread, 2 * per_thread)


def test_two_processes_flushing_the_same_key_at_once_lose_no_counts() -> None:
    alice = api_user("alice")
    digest = key_hash(alice.secret)
    processes = [UsageRecorder(), UsageRecorder()]
    for recorder in processes:
        for _ in range(50):
            recorder.record(digest)
    start = threading.Barrier(2)

    def flush(recorder: UsageRecorder) -> None:
        start.wait()
        recorder.flush()

    threads = [threading.Thread(target=flush, args=(recorder,)) for recorder in processes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [recorder.pending() for recorder in processes] == [{}, {}]
    assert usage(alice)[:2] == (100, 100)


def race_once(monkeypatch: pytest.MonkeyPatch, meanwhile: Any) -> None:
    """Run ``meanwhile(key)`` right after the flush first reads an API key."""
    original = ScopedManager.get_or_none
    done: list[bool] = []

    def racing(self: ScopedManager[Any], *args: Any, **kwargs: Any) -> Any:
        found = original(self, *args, **kwargs)
        if self.model is ApiKey and found is not None and not done:
            done.append(True)
            meanwhile(found)
        return found

    monkeypatch.setattr(ScopedManager, "get_or_none", racing)


def test_a_change_made_during_a_flush_is_kept_and_the_counts_written_after_it(
    settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.NIMBUS_KEY_USAGE_FLUSH_SECONDS = 3600
    alice = api_user("alice")
    get_me(alice)
    get_me(alice)

    def rename(key: ApiKey) -> None:
        other = ApiKey.objects.auth("alice").get(key.pk)
        other.set("name", "Renamed meanwhile")
        other.save()

    race_once(monkeypatch, rename)
    assert key_usage.flush() == 1
    key = stored(alice)
    assert key.get("name") == "Renamed meanwhile" and key.get("user_id") == "alice"
    assert key.get("_auth") == ["alice"]
    assert usage(alice)[:2] == (2, 2)


def test_a_key_deleted_before_its_flush_is_dropped_not_brought_back(settings) -> None:
    settings.NIMBUS_KEY_USAGE_FLUSH_SECONDS = 3600
    alice, bob = api_user("alice"), api_user("bob")
    get_me(alice)
    get_me(bob)
    assert alice.client.delete(f"/api/keys/{key_hash(alice.secret)}/").status_code == 204
    ApiKey.objects.system().get(key_hash(bob.secret)).delete(hard=True)
    assert key_usage.flush() == 0
    assert key_usage.pending() == {}
    revoked = stored(alice)
    assert revoked.get("deleted_at") is not None and revoked.get("active") is False
    assert revoked.get("usage") == {"requests_today": 0, "requests_total": 0}
    assert conf.kv_store().get("NIMBUS_KEYS", f"apikey:{key_hash(bob.secret)}") is None


def test_a_key_deleted_during_its_flush_is_not_brought_back(
    settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.NIMBUS_KEY_USAGE_FLUSH_SECONDS = 3600
    alice = api_user("alice")
    get_me(alice)
    race_once(monkeypatch, lambda key: ApiKey.objects.system().get(key.pk).delete(hard=True))
    assert key_usage.flush() == 0
    assert key_usage.pending() == {}
    assert conf.kv_store().get("NIMBUS_KEYS", f"apikey:{key_hash(alice.secret)}") is None


def fail_writes_once(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The KV store's next write raises ``Unavailable``; returns the failed calls."""
    kv = conf.kv_store()
    failed: list[str] = []
    for name in ("start_put", "start_put_many"):
        original = getattr(kv, name)

        def failing(*args: Any, _name: str = name, _original: Any = original, **kw: Any) -> Any:
            if not failed:
                failed.append(_name)
                raise Unavailable("injected: the store is down")
            return _original(*args, **kw)

        monkeypatch.setattr(kv, name, failing)
    return failed


def test_a_failed_flush_keeps_the_counts_for_the_next_one(
    settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings.NIMBUS_KEY_USAGE_FLUSH_SECONDS = 3600
    alice = api_user("alice")
    for _ in range(3):
        get_me(alice)
    failed = fail_writes_once(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="nimbus.key_usage"):
        assert key_usage.flush() == 0
    assert failed and "3 requests kept for the next flush" in caplog.text
    assert key_usage.pending()[key_hash(alice.secret)].total == 3
    assert usage(alice)[:2] == (0, 0)
    get_me(alice)
    assert key_usage.flush() == 1
    assert usage(alice)[:2] == (4, 4)


def test_a_flush_failing_after_a_response_does_not_reach_the_request(
    settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.NIMBUS_KEY_USAGE_FLUSH_SECONDS = 0
    alice = api_user("alice")
    failed = fail_writes_once(monkeypatch)
    get_me(alice)  # 200, though the flush after it failed
    assert failed and key_usage.pending()[key_hash(alice.secret)].total == 1
    get_me(alice)
    assert usage(alice)[:2] == (2, 2)


def test_the_flush_interval_setting_is_checked(settings) -> None:
    for wrong in (-1, "10", True, float("nan")):
        settings.NIMBUS_KEY_USAGE_FLUSH_SECONDS = wrong
        with pytest.raises(ImproperlyConfigured, match="NIMBUS_KEY_USAGE_FLUSH_SECONDS"):
            key_usage.flush_interval()
        with pytest.raises(SystemCheckError, match=r"nimbus\.E006"):
            call_command("check")
    del settings.NIMBUS_KEY_USAGE_FLUSH_SECONDS
    assert key_usage.flush_interval() == key_usage.DEFAULT_FLUSH_SECONDS
    call_command("check")
