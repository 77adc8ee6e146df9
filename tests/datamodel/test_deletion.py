"""on_delete: CASCADE, PROTECT, SET_NULL and DO_NOTHING through every delete path, restore of
a cascade, bulk deletes by id and by query, conflicts, and their round trips."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from datamodel import (
    Connection,
    DeleteConflict,
    ProtectedError,
    Rejected,
    ValidationError,
    create_tables,
)
from datastore import Datastore, KVLimits
from datastore.backends.memory import MemoryKVStore, MemorySQLDatabase
from tests.datamodel.conftest import routing
from tests.datamodel.models import TEST_MODELS, Comment, Memo, Pin, Task, Workspace


def trips(
    connection: Connection, kv: int, sql: int, combined: tuple[int, int] | None = None
) -> tuple[int, int]:
    """The (KV, SQL) round trips to expect: with the SQL adapter objects live in the metadata
    database, whose one counter counts both; where the store and the database combine
    requests (the gateway), ``combined`` (a write with its rows counts on KV, a select with
    the reads of its rows on SQL)."""
    if combined is not None and connection.sql.backend_name == "gateway":
        return combined
    if connection.datastore.adapter.name == "sql":
        return 0, kv + sql
    return kv, sql


class Counted:
    """Round trips made inside a ``with`` block, as ``trips`` states them."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def __enter__(self) -> Counted:
        self.kv = self.connection.datastore.round_trips.value
        self.sql = self.connection.sql.round_trips.value
        return self

    def __exit__(self, *exc_info: object) -> None:
        kv = self.connection.datastore.round_trips.value - self.kv
        sql = self.connection.sql.round_trips.value - self.sql
        self.trips = (0, sql) if self.connection.datastore.adapter.name == "sql" else (kv, sql)


def stored(connection: Connection, model: type[Any], kv_id: str) -> Any:
    """The object as KV holds it (soft-deleted or not), or ``None``."""
    return model.objects.system(using=connection).get_or_none(kv_id, include_deleted=True)


def rows(connection: Connection, table: str) -> int:
    return connection.sql.execute(f"SELECT count(*) AS n FROM {table}")[0]["n"]


@pytest.fixture
def events() -> Iterator[list[tuple[str, str]]]:
    """Delete and restore hooks of tasks, comments and workspaces, as (event, pk)."""
    seen: list[tuple[str, str]] = []
    connected = []
    for model in (Workspace, Task, Comment):
        for event in ("before_delete", "after_delete", "before_restore", "after_restore"):

            def record(instance: Any, event: str = event) -> None:
                seen.append((event, instance.pk))

            model.hooks.connect(event, record)
            connected.append((model, event, record))
    yield seen
    for model, event, record in connected:
        model.hooks.disconnect(event, record)


def make_workspace(
    connection: Connection, tasks: int = 3, user: str = "u1", prefix: str = "t"
) -> Any:
    """A workspace with tasks ``t0``, ``t1``... (a primary key is unique across workspaces:
    the metadata table is keyed by it, though the KV id is ``{workspace}:{task_id}``)."""
    workspace = Workspace.objects.auth(user, using=connection).create(title="w")
    Task.objects.auth(user, using=connection).bulk_create(
        [{"task_id": f"{prefix}{i}", "workspace": workspace.pk} for i in range(tasks)]
    )
    return workspace


def kv_deletes(connection: Connection) -> int:
    """Round trips of one KV bulk delete: Cloudflare's bulk delete does not say how many keys
    existed, so its backend reads them first to count them."""
    return 2 if type(connection.datastore.kv).__name__ == "CloudflareKVStore" else 1


# -- CASCADE ---------------------------------------------------------------------------------


def test_a_soft_delete_cascades_with_the_same_stamp_in_counted_round_trips(
    connection: Connection, events: list[tuple[str, str]]
) -> None:
    workspace = make_workspace(connection, tasks=5)
    tasks = Task.objects.auth("u1", using=connection)
    with Counted(connection) as counted:
        assert workspace.delete() == (6, {"TASK": 5, "WORKSPACE": 1})
    # Finding children: TASK.workspace (1 SQL + 1 bulk KV read of the 5 tasks), PIN.workspace
    # and MEMO.workspace (1 SQL each, nothing found), then TASK.parent and COMMENT.task for
    # the tasks (1 SQL each, nothing found). Writing: the 5 tasks (1 KV CAS batch + 1 SQL
    # batch), then the workspace (1 + 1). DO_NOTHING's MEMO.task is never queried.
    assert counted.trips == trips(connection, 1 + 2, 5 + 2, combined=(3, 5))
    stamp = workspace.get("deleted_at")
    assert stamp is not None
    assert tasks.count() == 0 and tasks.get_or_none(f"{workspace.pk}:t0") is None
    assert {task.get("deleted_at") for task in tasks.query().include_deleted().with_data()} == {
        stamp
    }
    deletes = [event for event in events if event[0].endswith("_delete")]
    assert deletes[0] == ("before_delete", workspace.pk)  # every before_delete hook first,
    assert set(deletes[1:6]) == {("before_delete", f"t{i}") for i in range(5)}
    assert set(deletes[6:11]) == {("after_delete", f"t{i}") for i in range(5)}  # children
    assert deletes[11] == ("after_delete", workspace.pk)  # before their parent


def test_a_manager_delete_by_id_cascades(connection: Connection) -> None:
    workspace = make_workspace(connection, tasks=2)
    assert Workspace.objects.auth("u1", using=connection).delete(workspace.pk) is True
    assert Task.objects.auth("u1", using=connection).count() == 0


def test_a_cascade_goes_down_every_level_and_hard_deletes_models_without_soft_delete(
    connection: Connection,
) -> None:
    workspace = make_workspace(connection, tasks=2)
    tasks = Task.objects.auth("u1", using=connection)
    top = tasks.get(f"{workspace.pk}:t0")
    sub = tasks.create(task_id="sub", workspace=workspace, parent=top)
    subsub = tasks.create(task_id="subsub", workspace=workspace, parent=sub)
    comment = Comment.objects.auth("u1", using=connection).create(task=subsub, body="x")
    assert top.delete() == (4, {"COMMENT": 1, "TASK": 3})
    assert stored(connection, Comment, comment.pk) is None  # no soft delete: removed
    assert rows(connection, "comment_meta") == 0
    assert {task.pk for task in tasks.query().with_data()} == {"t1"}
    assert stored(connection, Task, subsub.kv_id).get("deleted_at") == top.get("deleted_at")


def test_children_of_other_users_follow_the_parent(connection: Connection) -> None:
    workspace = make_workspace(connection, tasks=1)
    theirs = Task.objects.system(using=connection).create(workspace=workspace, user_id="u2")
    workspace.delete()
    assert Task.objects.auth("u2", using=connection).get_or_none(theirs.kv_id) is None
    assert stored(connection, Task, theirs.kv_id).get("deleted_at") is not None


def test_a_hard_delete_removes_children_soft_deleted_ones_included(
    connection: Connection,
) -> None:
    workspace = make_workspace(connection, tasks=3)
    tasks = Task.objects.auth("u1", using=connection)
    tasks.get(f"{workspace.pk}:t0").delete()
    with Counted(connection) as counted:
        assert workspace.delete(hard=True) == (4, {"TASK": 3, "WORKSPACE": 1})
    # The same reads as a soft delete (the children query includes deleted ones); writing is
    # one KV bulk delete + one SQL delete for the tasks, then for the workspace.
    assert counted.trips == trips(connection, 1 + 2 * kv_deletes(connection), 5 + 2)
    assert rows(connection, "task_meta") == rows(connection, "workspace_meta") == 0
    assert stored(connection, Task, f"{workspace.pk}:t0") is None
    assert stored(connection, Workspace, workspace.pk) is None


def test_a_rejecting_before_delete_hook_of_a_child_stops_everything(
    memory_connection: Connection,
) -> None:
    workspace = make_workspace(memory_connection, tasks=2)

    def refuse(task: Any) -> None:
        if task.pk == "t1":
            raise Rejected("t1 is pinned by policy")

    Task.hooks.connect("before_delete", refuse)
    try:
        with pytest.raises(Rejected, match="t1"):
            workspace.delete()
    finally:
        Task.hooks.disconnect("before_delete", refuse)
    assert stored(memory_connection, Workspace, workspace.pk).get("deleted_at") is None
    assert Task.objects.auth("u1", using=memory_connection).count() == 2


# -- PROTECT, SET_NULL, DO_NOTHING -----------------------------------------------------------


def test_protect_refuses_before_anything_is_written(connection: Connection) -> None:
    workspace = make_workspace(connection, tasks=2)
    memo = Memo.objects.auth("u1", using=connection).create(workspace=workspace)
    pins = Pin.objects.auth("u1", using=connection)
    made = pins.bulk_create([{"pin_id": f"p{i}", "workspace": workspace.pk} for i in range(5)])
    with pytest.raises(ProtectedError) as refused:
        workspace.delete()
    error = refused.value
    assert (error.model, error.object_id, error.field, error.count) == (
        "WORKSPACE",
        workspace.pk,
        "PIN.workspace",
        5,
    )
    assert len(error.protected_ids) == 3 and set(error.protected_ids) < {p.pk for p in made}
    assert f"cannot delete WORKSPACE {workspace.pk!r}" in str(error)
    assert "PIN.workspace (on_delete=PROTECT)" in str(error) and "and 2 more" in str(error)
    assert stored(connection, Workspace, workspace.pk).get("deleted_at") is None
    assert Task.objects.auth("u1", using=connection).count() == 2
    assert stored(connection, Memo, memo.pk).get("workspace") == workspace.pk


def test_protect_names_only_the_children_the_deleting_user_may_see(
    memory_connection: Connection,
) -> None:
    workspace = make_workspace(memory_connection, tasks=0)
    theirs = Pin.objects.system(using=memory_connection).create(  # another user's pin
        workspace=workspace.pk, user_id="u2"
    )
    with pytest.raises(ProtectedError) as refused:
        workspace.delete()
    assert refused.value.count == 1 and refused.value.protected_ids == []
    assert theirs.pk not in str(refused.value) and "by 1 PIN object(s)" in str(refused.value)


def test_protect_counts_soft_deleted_children_only_for_a_hard_delete(
    connection: Connection,
) -> None:
    workspace = make_workspace(connection, tasks=0)
    pins = Pin.objects.auth("u1", using=connection)
    pin = pins.create(workspace=workspace)
    pin.delete()
    with pytest.raises(ProtectedError, match="a hard delete would leave them"):
        workspace.delete(hard=True)
    assert workspace.delete() == (1, {"WORKSPACE": 1})  # a soft delete: the pin is deleted
    with pytest.raises(ValidationError, match=r"WORKSPACE .* restore it first"):
        pin.restore()
    pins.delete_many([pin.pk], hard=True)
    assert workspace.delete(hard=True) == (1, {"WORKSPACE": 1})


def test_set_null_goes_through_the_save_path_deleted_children_included(
    connection: Connection,
) -> None:
    workspace = make_workspace(connection, tasks=0)
    memos = Memo.objects.auth("u1", using=connection)
    live = memos.create(workspace=workspace, body="live")
    gone = memos.create(workspace=workspace, body="gone")
    gone.delete()
    updated: list[Any] = []
    Memo.hooks.connect("after_update", lambda memo, changes: updated.append(changes))
    try:
        assert workspace.delete() == (1, {"WORKSPACE": 1})
    finally:
        Memo.hooks.disconnect("after_update", Memo.hooks.handlers("after_update")[-1])
    assert updated == [{"workspace": None}, {"workspace": None}]
    for memo in (live, gone):
        now = stored(connection, Memo, memo.pk)
        assert now.get("workspace") is None and now.get("_version") == memo.get("_version") + 1
    assert memos.filter(workspace__isnull=True).count() == 1
    workspace.restore()
    assert stored(connection, Memo, live.pk).get("workspace") is None  # the link stays cleared


def test_do_nothing_leaves_the_reference_and_is_never_queried(connection: Connection) -> None:
    workspace = make_workspace(connection, tasks=1)
    task = Task.objects.auth("u1", using=connection).get(f"{workspace.pk}:t0")
    memo = Memo.objects.auth("u1", using=connection).create(task=task.kv_id)
    with Counted(connection) as counted:
        task.delete()
    # TASK.parent and COMMENT.task are queried; MEMO.task (DO_NOTHING) is not.
    assert counted.trips == trips(connection, 1, 2 + 1, combined=(1, 2))
    assert stored(connection, Memo, memo.pk).get("task") == task.kv_id
    assert memo.related("task") is None


# -- restore ---------------------------------------------------------------------------------


def test_restore_brings_back_what_the_same_delete_cascaded_to(
    connection: Connection, events: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two deletes in the same millisecond share their deleted_at: only the delete's own id
    # tells what it cascaded to.
    monkeypatch.setattr("datamodel.deletion.now_iso", lambda: "2025-01-01T00:00:00.000Z")
    workspace = make_workspace(connection, tasks=3)
    tasks = Task.objects.auth("u1", using=connection)
    earlier = tasks.get(f"{workspace.pk}:t0")
    earlier.delete()  # on its own, before the workspace
    comment = Comment.objects.auth("u1", using=connection).create(
        task=f"{workspace.pk}:t1", body="x"
    )
    workspace.delete()
    events.clear()
    workspace.restore()
    assert workspace.get("deleted_at") is None
    assert sorted(task.pk for task in tasks.query().with_data()) == ["t1", "t2"]
    assert stored(connection, Task, earlier.kv_id).get("deleted_at") is not None
    assert stored(connection, Comment, comment.pk) is None  # hard-deleted: gone for good
    assert events[0] == ("before_restore", workspace.pk)
    assert ("after_restore", "t1") in events and ("after_restore", "t2") in events
    assert ("after_restore", "t0") not in events


def test_a_child_of_a_deleted_parent_cannot_be_restored(connection: Connection) -> None:
    workspace = make_workspace(connection, tasks=1)
    workspace.delete()
    task = Task.objects.auth("u1", using=connection).get(f"{workspace.pk}:t0", include_deleted=True)
    with pytest.raises(ValidationError, match=f"workspace: WORKSPACE '{workspace.pk}' is deleted"):
        task.restore()
    assert task.get("deleted_at") is not None


def test_a_cascaded_child_pointing_at_another_deleted_object_stays_deleted(
    connection: Connection,
) -> None:
    tasks = Task.objects.auth("u1", using=connection)
    home, other = make_workspace(connection, tasks=0), make_workspace(connection, tasks=0)
    parent = tasks.create(task_id="parent", workspace=other)
    child = tasks.create(task_id="child", workspace=home, parent=parent)
    other.delete()  # parent and child, with other's stamp
    home.delete()  # child is deleted already: nothing more
    other.restore()
    assert stored(connection, Task, parent.kv_id).get("deleted_at") is None
    assert stored(connection, Task, child.kv_id).get("deleted_at") is not None  # home is deleted
    home.restore()  # child has other's stamp, not home's: it stays deleted
    assert stored(connection, Task, child.kv_id).get("deleted_at") is not None


# -- delete_many and query deletes -----------------------------------------------------------


def test_delete_many_reads_once_and_counts_what_it_deleted(connection: Connection) -> None:
    workspace = make_workspace(connection, tasks=4)
    tasks = Task.objects.auth("u1", using=connection)
    ids = [f"{workspace.pk}:t{i}" for i in range(4)]
    with Counted(connection) as counted:
        assert tasks.delete_many([*ids[:3], f"{workspace.pk}:missing"]) == 3
    # One bulk KV read; TASK.parent and COMMENT.task (1 SQL each); one KV CAS batch + one SQL.
    assert counted.trips == trips(connection, 2, 3, combined=(2, 2))
    assert tasks.count() == 1
    assert tasks.delete_many(ids[:3]) == 0  # deleted already
    assert tasks.delete_many(ids[:3], hard=True) == 3  # hard: soft-deleted ones too
    assert Task.objects.auth("u2", using=connection).delete_many(ids) == 0  # not visible
    assert tasks.delete_many([]) == 0
    with pytest.raises(TypeError, match="list of ids"):
        tasks.delete_many(ids[3])


def test_the_manager_never_deletes_everything(connection: Connection) -> None:
    make_workspace(connection, tasks=2)
    tasks = Task.objects.auth("u1", using=connection)
    with pytest.raises(TypeError):
        tasks.delete()
    assert not hasattr(Task.objects, "delete")
    assert tasks.count() == 2


def test_a_query_delete_goes_through_the_delete_path(
    connection: Connection, events: list[tuple[str, str]]
) -> None:
    workspace = make_workspace(connection, tasks=4)
    tasks = Task.objects.auth("u1", using=connection)
    tasks.create(task_id="sub", workspace=workspace, parent=f"{workspace.pk}:t0")
    query = tasks.filter(task_id__in=["t0", "t1"])
    assert query.delete() == (3, {"TASK": 3})  # t0, t1 and t0's subtask
    assert ("after_delete", "sub") in events
    assert sorted(task.pk for task in tasks.query().with_data()) == ["t2", "t3"]
    assert tasks.query().only_deleted().delete(hard=True) == (3, {"TASK": 3})
    assert rows(connection, "task_meta") == 2
    assert Workspace.objects.auth("u1", using=connection).query().delete() == (
        3,
        {"TASK": 2, "WORKSPACE": 1},
    )
    with pytest.raises(ValidationError, match="sliced"):
        tasks.query()[:1].delete()
    with pytest.raises(ValidationError, match="values"):
        tasks.query().values("title").delete()


@pytest.fixture
def small_batches() -> Iterator[Connection]:
    """Memory stores whose KV writes take at most 2 objects."""
    sql = MemorySQLDatabase()
    datastore = Datastore(
        MemoryKVStore(limits=KVLimits(max_batch_write=2)), sql=sql, routing=routing()
    )
    create_tables(sql, TEST_MODELS)
    yield Connection(datastore, sql)
    datastore.close()


def test_writes_are_chunked_by_the_kv_batch_limit(small_batches: Connection) -> None:
    workspace = make_workspace(small_batches, tasks=5)
    with Counted(small_batches) as counted:
        assert workspace.delete() == (6, {"TASK": 5, "WORKSPACE": 1})
    # The reads as before; the 5 tasks in 3 chunks (2 + 2 + 1), each 1 KV + 1 SQL.
    assert counted.trips == (1 + 3 + 1, 5 + 3 + 1)
    workspace = make_workspace(small_batches, tasks=5, prefix="again")
    tasks = Task.objects.auth("u1", using=small_batches)
    with Counted(small_batches) as counted:
        assert tasks.filter(workspace=workspace).delete(hard=True) == (5, {"TASK": 5})
    # rows + objects (1 SQL + 1 KV), TASK.parent and COMMENT.task, 3 chunks of KV + SQL.
    assert counted.trips == (1 + 3, 1 + 2 + 3)


# -- conflicts -------------------------------------------------------------------------------


def touch(connection: Connection, task: Any) -> None:
    """Someone else changes the task (a new version) between its read and its delete."""
    other = Task.objects.system(using=connection).get(task.kv_id)
    other.set("title", f"{other.get('title') or ''}!")
    other.save()


def test_a_conflict_is_retried_once_from_a_fresh_read(memory_connection: Connection) -> None:
    workspace = make_workspace(memory_connection, tasks=3)
    touched: list[str] = []

    def interfere(task: Any) -> None:
        if task.pk not in touched:
            touched.append(task.pk)
            touch(memory_connection, task)

    Task.hooks.connect("before_delete", interfere)
    try:
        assert workspace.delete() == (4, {"TASK": 3, "WORKSPACE": 1})
    finally:
        Task.hooks.disconnect("before_delete", interfere)
    for i in range(3):
        task = stored(memory_connection, Task, f"{workspace.pk}:t{i}")
        assert task.get("title") == "!" and task.get("deleted_at") is not None


def test_objects_that_keep_changing_are_reported_and_their_parents_kept(
    memory_connection: Connection,
) -> None:
    workspace = make_workspace(memory_connection, tasks=3)
    stubborn = f"{workspace.pk}:t1"

    def interfere(task: Any) -> None:
        if task.kv_id == stubborn:
            touch(memory_connection, task)

    Task.hooks.connect("before_delete", interfere)
    try:
        with pytest.raises(DeleteConflict) as failed:
            workspace.delete()
    finally:
        Task.hooks.disconnect("before_delete", interfere)
    assert failed.value.failed == {"TASK": [stubborn], "WORKSPACE": [workspace.pk]}
    assert failed.value.failed_ids == [stubborn, workspace.pk]
    assert failed.value.deleted == 2
    assert stored(memory_connection, Task, stubborn).get("deleted_at") is None
    assert stored(memory_connection, Workspace, workspace.pk).get("deleted_at") is None
    assert stored(memory_connection, Task, f"{workspace.pk}:t0").get("deleted_at") is not None
    assert workspace.delete() == (2, {"TASK": 1, "WORKSPACE": 1})  # once it settles
