"""A state machine over the test models' references: several users create workspaces with
tasks, subtasks, comments, pins and memos, delete them (soft or hard) and restore them. After
every step the references hold what their ``on_delete`` promises:

* CASCADE (task -> workspace, task -> parent task, comment -> task): a live child's parent is
  live, and every stored child's parent is stored;
* SET_NULL (memo -> workspace): a memo, deleted or not, points at a live workspace or at none;
* PROTECT (pin -> workspace): a live pin's workspace is live, a stored pin's is stored;

and every metadata row matches its KV object.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
)

from datamodel import Connection, ProtectedError, ValidationError, create_tables
from datamodel.repair import verify
from datastore import Datastore
from datastore.backends.memory import MemoryKVStore, MemorySQLDatabase
from tests.datamodel.conftest import routing
from tests.datamodel.models import TEST_MODELS, Comment, Memo, Pin, Task, Workspace

USERS = st.sampled_from(["u1", "u2", "u3"])
MODELS = (Workspace, Task, Comment, Pin, Memo)


class References(RuleBasedStateMachine):
    workspaces = Bundle("workspaces")
    tasks = Bundle("tasks")
    comments = Bundle("comments")
    pins = Bundle("pins")
    memos = Bundle("memos")

    def __init__(self) -> None:
        super().__init__()
        sql = MemorySQLDatabase()
        self.connection = Connection(Datastore(MemoryKVStore(), routing=routing()), sql)
        create_tables(sql, TEST_MODELS)
        self.created = 0

    # -- helpers ---------------------------------------------------------------------------

    def stored(self, model: type[Any], kv_id: str | None) -> Any:
        if kv_id is None:
            return None
        return model.objects.system(using=self.connection).get_or_none(kv_id, include_deleted=True)

    def live(self, model: type[Any], kv_id: str | None) -> bool:
        found = self.stored(model, kv_id)
        return found is not None and found.get("deleted_at") is None

    def create(self, model: type[Any], user: str, live: bool, **values: Any) -> Any:
        """Create as the system on behalf of ``user`` (so children of other users' parents
        exist); refused exactly when a referenced object is not live."""
        self.created += 1
        values[model._meta.pk_name] = f"{model._meta.name.lower()}{self.created}"
        try:
            made = model.objects.system(using=self.connection).create(user_id=user, **values)
        except ValidationError:
            assert not live
            event("a create refused: a reference is deleted")
            return multiple()
        assert live
        return made.kv_id

    def delete(self, model: type[Any], kv_id: str, hard: bool) -> None:
        before = self.stored(model, kv_id)
        if before is None:
            return
        owner = Workspace.objects.auth(before.get("user_id"), using=self.connection)
        instance = model.objects.bind(owner.scope).get_or_none(kv_id, include_deleted=hard)
        if instance is None:
            return  # soft-deleted already
        try:
            count, _ = instance.delete(hard=hard)
        except ProtectedError as refused:
            event("a delete refused by PROTECT")
            assert model is Workspace and refused.object_id == kv_id
            pins = Pin.objects.system(using=self.connection).filter(workspace=kv_id)
            assert (pins.include_deleted() if hard else pins).exists()
            assert self.stored(model, kv_id) == before  # nothing was written
            return
        event(f"a {'hard' if hard else 'soft'} delete reaching {min(count, 3)}+ objects")
        after = self.stored(model, kv_id)
        assert after is None if hard or not model._meta.soft_delete else after.get("deleted_at")

    def restore(self, model: type[Any], kv_id: str) -> None:
        before = self.stored(model, kv_id)
        if before is None or before.get("deleted_at") is None:
            return
        scope = Workspace.objects.auth(before.get("user_id"), using=self.connection).scope
        instance = model.objects.bind(scope).get(kv_id, include_deleted=True)
        try:
            instance.restore()
        except ValidationError:
            dead = [
                reference
                for reference in model._meta.references
                if before.get(reference.name) is not None
                and not self.live(reference.related_model, before.get(reference.name))
            ]
            assert dead, "a restore was refused though every reference is live"
            event("a restore refused: a reference is deleted")
            return
        assert self.live(model, kv_id)
        event(f"a {model._meta.name} restored")

    # -- rules -----------------------------------------------------------------------------

    @initialize(target=workspaces)
    def start_with_workspaces(self) -> Any:
        return multiple(*(self.create(Workspace, user, True) for user in ("u1", "u2")))

    @initialize(target=tasks, workspace=workspaces)
    def start_with_a_task_tree(self, workspace: str) -> Any:
        top = self.create(Task, "u1", True, workspace=workspace)
        sub = self.create(Task, "u2", True, workspace=workspace, parent=top)
        return multiple(top, sub, self.create(Task, "u3", True, workspace=workspace, parent=sub))

    @rule(target=workspaces, user=USERS)
    def create_workspace(self, user: str) -> Any:
        return self.create(Workspace, user, True)

    @rule(target=tasks, user=USERS, workspace=workspaces, parent=st.none() | tasks)
    def create_task(self, user: str, workspace: str, parent: str | None) -> Any:
        live = self.live(Workspace, workspace) and (parent is None or self.live(Task, parent))
        return self.create(Task, user, live, workspace=workspace, parent=parent)

    @rule(target=comments, user=USERS, task=tasks)
    def create_comment(self, user: str, task: str) -> Any:
        return self.create(Comment, user, self.live(Task, task), task=task)

    @rule(target=pins, user=USERS, workspace=workspaces)
    def create_pin(self, user: str, workspace: str) -> Any:
        return self.create(Pin, user, self.live(Workspace, workspace), workspace=workspace)

    @rule(target=memos, user=USERS, workspace=st.none() | workspaces, task=st.none() | tasks)
    def create_memo(self, user: str, workspace: str | None, task: str | None) -> Any:
        live = (workspace is None or self.live(Workspace, workspace)) and (
            task is None or self.live(Task, task)
        )
        return self.create(Memo, user, live, workspace=workspace, task=task)

    @rule(workspace=workspaces, hard=st.booleans())
    def delete_workspace(self, workspace: str, hard: bool) -> None:
        self.delete(Workspace, workspace, hard)

    @rule(task=tasks, hard=st.booleans())
    def delete_task(self, task: str, hard: bool) -> None:
        self.delete(Task, task, hard)

    @rule(comment=comments)
    def delete_comment(self, comment: str) -> None:
        self.delete(Comment, comment, False)

    @rule(pin=pins, hard=st.booleans())
    def delete_pin(self, pin: str, hard: bool) -> None:
        self.delete(Pin, pin, hard)

    @rule(memo=memos, hard=st.booleans())
    def delete_memo(self, memo: str, hard: bool) -> None:
        self.delete(Memo, memo, hard)

    @rule(workspace=workspaces)
    def restore_workspace(self, workspace: str) -> None:
        self.restore(Workspace, workspace)

    @rule(task=tasks)
    def restore_task(self, task: str) -> None:
        self.restore(Task, task)

    @rule(pin=pins)
    def restore_pin(self, pin: str) -> None:
        self.restore(Pin, pin)

    @rule(memo=memos)
    def restore_memo(self, memo: str) -> None:
        self.restore(Memo, memo)

    # -- invariants ------------------------------------------------------------------------

    def everything(self, model: type[Any]) -> list[dict[str, Any]]:
        system = self.connection.datastore.system()
        return [
            stored.data for batch in system.scan(model._meta.kv_class) for stored in batch.values()
        ]

    @invariant()
    def cascade_children_never_outlive_their_parents(self) -> None:
        for data in self.everything(Task):
            for model, kv_id in ((Workspace, data["workspace"]), (Task, data["parent"])):
                if kv_id is None:
                    continue
                assert self.stored(model, kv_id) is not None, (data, kv_id)
                if data["deleted_at"] is None:
                    assert self.live(model, kv_id), (data, kv_id)
        for data in self.everything(Comment):
            assert self.live(Task, data["task"]), data

    @invariant()
    def set_null_children_point_at_live_parents_or_none(self) -> None:
        for data in self.everything(Memo):
            assert data["workspace"] is None or self.live(Workspace, data["workspace"]), data

    @invariant()
    def protected_parents_are_kept(self) -> None:
        for data in self.everything(Pin):
            assert self.stored(Workspace, data["workspace"]) is not None, data
            if data["deleted_at"] is None:
                assert self.live(Workspace, data["workspace"]), data

    @invariant()
    def metadata_rows_match_kv(self) -> None:
        for model in MODELS:
            report = verify(self.connection, model)
            assert report.drift == 0, report.to_json()


References.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_references_keep_their_promises = References.TestCase
