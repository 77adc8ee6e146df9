"""References: declaration, stored ids, checks on save, and related objects read in bulk."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from datamodel import (
    CASCADE,
    DO_NOTHING,
    SET_NULL,
    Connection,
    DataModel,
    DeclarationError,
    ValidationError,
    fields,
    registry,
)
from datamodel.related import reference_field
from datamodel.schema import index_name
from datamodel.scope import Scope
from tests.datamodel.models import Comment, Memo, Page, Task, Workspace
from tests.datamodel.test_deletion import Counted, trips


@pytest.fixture
def declared() -> Iterator[list[str]]:
    """Names of the models a test declares, unregistered afterwards (a model left with a
    reference to nothing would break every later delete)."""
    names: list[str] = []
    yield names
    for name in names:
        registry.unregister(name)


def declare(names: list[str], name: str, **attrs: Any) -> type[DataModel]:
    meta = {"name": name.upper(), "namespace": "NIMBUS_WORK", **attrs.pop("Meta", {})}
    names.append(meta["name"])
    return type(name, (DataModel,), {**attrs, "Meta": type("Meta", (), meta)})


# -- declaration -----------------------------------------------------------------------------


def test_on_delete_is_required_and_must_be_a_handler() -> None:
    with pytest.raises(TypeError, match="on_delete"):
        fields.Reference("WORKSPACE")  # type: ignore[call-arg]
    with pytest.raises(DeclarationError, match="on_delete must be CASCADE"):
        fields.Reference("WORKSPACE", on_delete="cascade")  # type: ignore[arg-type]
    with pytest.raises(DeclarationError, match="give the model class"):
        fields.Reference(42, on_delete=CASCADE)  # type: ignore[arg-type]


def test_set_null_needs_a_field_that_may_be_null(declared: list[str]) -> None:
    with pytest.raises(DeclarationError, match=r"Orphan\.workspace: .*SET_NULL.*required"):
        declare(
            declared,
            "Orphan",
            workspace=fields.Reference("WORKSPACE", on_delete=SET_NULL, required=True),
        )
    with pytest.raises(DeclarationError, match="cannot be the primary key"):
        declare(
            declared,
            "Orphan",
            workspace=fields.Reference("WORKSPACE", on_delete=CASCADE, primary_key=True),
        )


def test_a_reference_is_an_indexed_sync_field() -> None:
    meta = Task._meta
    assert {"workspace", "parent"} <= set(meta.sync_fields)
    assert ("workspace",) in meta.indexes and ("parent",) in meta.indexes
    assert [field.name for field in meta.references] == ["workspace", "parent"]
    assert index_name(meta, ("workspace",)) == "task_meta__workspace"


def test_a_declared_index_starting_with_the_reference_serves_it(declared: list[str]) -> None:
    model = declare(
        declared,
        "Note2",
        workspace=fields.Reference("WORKSPACE", on_delete=CASCADE),
        title=fields.String(),
        Meta={"sync_fields": ["title"], "indexes": [("workspace", "title")]},
    )
    assert ("workspace",) not in model._meta.indexes
    assert ("workspace", "title") in model._meta.indexes


def test_targets_resolve_by_meta_name_class_or_class_name() -> None:
    assert reference_field(Task, "workspace").related_model is Workspace  # Meta.name
    assert reference_field(Task, "parent").related_model is Task  # class name, its own model
    assert reference_field(Comment, "task").related_model is Task  # the class
    assert reference_field(Memo, "workspace").related_model is Workspace  # class name


def test_an_unknown_or_ambiguous_target_fails_at_first_use_naming_the_field(
    declared: list[str],
) -> None:
    import nimbus.models  # noqa: F401  # a second class named Page

    model = declare(
        declared,
        "Stray",
        owner=fields.Reference("NOWHERE", on_delete=CASCADE),
        page=fields.Reference("Page", on_delete=DO_NOTHING),
    )
    with pytest.raises(DeclarationError, match=r"Stray\.owner: Reference to 'NOWHERE'"):
        reference_field(model, "owner").related_model  # noqa: B018
    with pytest.raises(DeclarationError, match=r"Stray\.page: Reference to 'Page' is ambiguous"):
        reference_field(model, "page").related_model  # noqa: B018
    assert fields.Reference("WEBPAGE", on_delete=CASCADE).related_model is Page


# -- values and checks on save ---------------------------------------------------------------


def test_an_instance_is_stored_as_its_kv_id(connection: Connection) -> None:
    workspace = Workspace.objects.auth("u1", using=connection).create(title="w")
    tasks = Task.objects.auth("u1", using=connection)
    task = tasks.create(workspace=workspace, title="t")
    assert task.get("workspace") == workspace.pk
    comment = Comment.objects.auth("u1", using=connection).create(task=task, body="hi")
    assert comment.get("task") == task.kv_id == f"{workspace.pk}:{task.pk}"  # composite id
    assert [row["task_id"] for row in tasks.filter(workspace=workspace)] == [task.pk]
    with pytest.raises(ValidationError, match="must be saved"):
        tasks.new(workspace=Workspace.objects.auth("u1", using=connection).new())
    with pytest.raises(ValidationError, match="expected a WORKSPACE"):
        tasks.new(workspace=task)
    with pytest.raises(ValidationError, match="cannot be empty"):
        tasks.new(workspace="")


def test_a_save_checks_new_and_changed_references_in_one_bulk_read(
    connection: Connection,
) -> None:
    workspaces = Workspace.objects.auth("u1", using=connection)
    first, second = workspaces.create(title="a"), workspaces.create(title="b")
    tasks = Task.objects.auth("u1", using=connection)
    with Counted(connection) as counted:
        task = tasks.create(workspace=first)
    assert counted.trips == trips(connection, 2, 1, combined=(2, 0))  # + the read of the workspace
    with Counted(connection) as counted:
        task.set("title", "renamed")
        task.save()
    assert counted.trips == trips(connection, 1, 1, combined=(1, 0))  # the reference did not change
    with Counted(connection) as counted:
        made = tasks.bulk_create(
            [{"workspace": first.pk}, {"workspace": second.pk}, {"workspace": first.pk}]
        )
    assert counted.trips == trips(connection, 2, 1, combined=(2, 0))  # one read for every workspace
    assert len(made) == 3


def test_a_parent_read_live_through_the_scope_is_not_read_again_until_deleted(
    connection: Connection,
) -> None:
    created = Workspace.objects.auth("u1", using=connection).create(title="a")
    scope = Scope(connection, "u1")  # one unit of work, as one API request
    workspaces, tasks = Workspace.objects.bind(scope), Task.objects.bind(scope)
    workspace = workspaces.get(created.pk)
    with Counted(connection) as counted:
        tasks.create(workspace=workspace.pk)
    assert counted.trips == trips(connection, 1, 1, combined=(1, 0))  # no read of the workspace
    workspaces.delete(workspace.pk)
    with Counted(connection) as counted, pytest.raises(ValidationError, match="deleted"):
        tasks.create(workspace=workspace.pk)
    assert counted.trips == trips(connection, 1, 0)  # read again once deleted: refused
    # another scope read nothing: it checks
    with Counted(connection) as counted, pytest.raises(ValidationError, match="deleted"):
        Task.objects.auth("u1", using=connection).create(workspace=workspace.pk)
    assert counted.trips == trips(connection, 1, 0)


def test_a_missing_deleted_or_invisible_reference_is_refused(connection: Connection) -> None:
    mine = Workspace.objects.auth("u1", using=connection).create(title="mine")
    theirs = Workspace.objects.auth("u2", using=connection).create(title="theirs")
    gone = Workspace.objects.auth("u1", using=connection).create(title="gone")
    gone.delete()
    tasks = Task.objects.auth("u1", using=connection)
    for workspace_id in ("nope", theirs.pk, gone.pk):
        with pytest.raises(ValidationError, match=f"workspace: WORKSPACE '{workspace_id}' is"):
            tasks.create(workspace=workspace_id)
    with pytest.raises(ValidationError, match="workspace"):
        tasks.bulk_create([{"workspace": mine.pk}, {"workspace": "nope"}])
    assert tasks.count() == 0
    task = tasks.create(workspace=mine, title="t")
    memo = Memo.objects.auth("u1", using=connection).create(workspace=mine, task=task.kv_id)
    memo.set("workspace", gone.pk)
    with pytest.raises(ValidationError, match="workspace"):
        memo.save()
    # system access may point anyone's object at anyone's
    system = Task.objects.system(using=connection)
    assert system.create(workspace=theirs, user_id="u1").get("workspace") == theirs.pk


def test_objects_created_together_may_reference_each_other(connection: Connection) -> None:
    workspace = Workspace.objects.auth("u1", using=connection).create()
    tasks = Task.objects.auth("u1", using=connection)
    top = tasks.new(task_id="top", workspace=workspace)
    sub = tasks.new(task_id="sub", workspace=workspace, parent=f"{workspace.pk}:top")
    tasks.bulk_save([top, sub])
    assert tasks.get(sub.kv_id).related("parent") == top


# -- related objects -------------------------------------------------------------------------


@pytest.fixture
def board(connection: Connection) -> dict[str, Any]:
    """Two workspaces of u1 with three tasks each (a subtask among them), and one of u2."""
    workspaces = Workspace.objects.auth("u1", using=connection)
    tasks = Task.objects.auth("u1", using=connection)
    first, second = workspaces.create(title="first"), workspaces.create(title="second")
    made = tasks.bulk_create(
        [
            {"task_id": f"t{i}", "workspace": (first if i < 3 else second).pk, "title": f"{i}"}
            for i in range(6)
        ]
    )
    made[1].set("parent", made[0].kv_id)
    made[1].save()
    return {"workspaces": [first, second], "tasks": made, "u1": tasks}


def test_with_related_reads_each_referenced_model_once_per_page(
    connection: Connection, board: dict[str, Any]
) -> None:
    query = board["u1"].query().order_by("title").limit(4)
    with Counted(connection) as counted:
        plain = query.with_data().list()
    assert counted.trips == trips(connection, 1, 1, combined=(0, 1))
    with Counted(connection) as counted:
        page = query.with_related("workspace").list()
    assert counted.trips == trips(
        connection, 2, 1, combined=(1, 1)
    )  # +1: both workspaces in one read
    with Counted(connection) as counted:
        both = query.with_related().list()  # every reference: workspace and parent
    assert counted.trips == trips(connection, 3, 1, combined=(2, 1))  # +1 per referenced model
    assert [task.pk for task in page.data] == [task.pk for task in plain.data]
    first, second = board["workspaces"]
    with Counted(connection) as counted:
        assert [task.related("workspace") for task in page.data] == [first] * 3 + [second]
        assert [task.related("parent") for task in both.data] == [None, both.data[0], None, None]
    assert counted.trips == (0, 0)  # all read along with the page


def test_with_related_streams_in_batches(connection: Connection, board: dict[str, Any]) -> None:
    query = board["u1"].query().order_by("title").with_related("workspace")
    with Counted(connection) as counted:
        tasks = list(query.iterator(batch_size=3))
    assert counted.trips == trips(connection, 4, 2)  # per batch: rows, objects, workspaces
    assert [task.related("workspace").get("title") for task in tasks] == ["first"] * 3 + [
        "second"
    ] * 3


def test_related_reads_once_then_keeps_the_object(
    connection: Connection, board: dict[str, Any]
) -> None:
    task = board["u1"].get(board["tasks"][1].kv_id)
    with Counted(connection) as counted:
        assert task.related("parent") == board["tasks"][0]
        assert task.related("parent") == board["tasks"][0]
    assert counted.trips == trips(connection, 1, 0)
    task.set("parent", None)
    assert task.related("parent") is None
    with pytest.raises(ValidationError, match="is not a Reference field of TASK"):
        task.related("title")


def test_a_related_object_that_is_deleted_or_not_visible_is_none(
    connection: Connection, board: dict[str, Any]
) -> None:
    first = board["workspaces"][0]
    memos = Memo.objects.auth("u1", using=connection)
    task = board["tasks"][4]
    memo = memos.create(workspace=first, task=task.kv_id, body="see task 4")
    task.delete()  # DO_NOTHING: the memo keeps the id
    loaded = memos.query().with_related("task").first()
    assert loaded.get("task") == task.kv_id and loaded.related("task") is None
    shared = Memo.objects.system(using=connection).create(user_id="u2", workspace=first)
    assert Memo.objects.auth("u2", using=connection).get(shared.pk).related("workspace") is None
    assert memo.related("workspace") == first


def test_with_related_names_reference_fields_of_an_object_query(
    connection: Connection, board: dict[str, Any]
) -> None:
    query = board["u1"].query()
    with pytest.raises(ValidationError, match="not a Reference field"):
        query.with_related("title")
    with pytest.raises(ValidationError, match="values"):
        query.values("title").with_related("workspace")
