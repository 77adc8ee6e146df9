"""Models used by the datamodel tests (the spec's examples)."""

from __future__ import annotations

from typing import Any

from datamodel import (
    CASCADE,
    DO_NOTHING,
    PROTECT,
    SET_NULL,
    DataModel,
    Listing,
    Rejected,
    Seed,
    fields,
    ids,
    registry,
)

WEBHOOKS: list[dict[str, Any]] = []


class Page(DataModel):
    """The spec's PageModel."""

    page_id = fields.String(primary_key=True, generator=ids.uuid4)
    project_id = fields.String(required=True)
    url = fields.URL(required=True)
    title = fields.String(max_length=200)
    status = fields.Choice(["pending", "processing", "completed", "failed"], default="pending")
    priority = fields.Integer(default=5)
    score = fields.Number()
    archived = fields.Boolean(default=False)
    tags = fields.Array(of=fields.String(), default_factory=list)
    content = fields.Text()
    extracted_data = fields.JSON()
    metadata = fields.JSON()
    last_processed = fields.Timestamp()

    class Meta:
        name = "WEBPAGE"
        namespace = "PAGES"
        key_pattern = "webpage:{project_id}:{page_id}"
        table = "webpage_meta"
        sync_fields = [
            "url",
            "title",
            "status",
            "priority",
            "score",
            "archived",
            "tags",
            "last_processed",
        ]
        indexes = [("project_id", "status")]

    def after_update(self, changes: dict[str, Any]) -> None:
        if changes.get("status") == "completed":
            WEBHOOKS.append(
                {
                    "event": "page.completed",
                    "page_id": self.get("page_id"),
                    "project_id": self.get("project_id"),
                    "url": self.get("url"),
                }
            )


class Note(DataModel):
    """A model with hooks that modify and reject."""

    note_id = fields.String(primary_key=True, generator=ids.uuid4)
    body = fields.String(required=True)
    slug = fields.String()
    locked = fields.Boolean(default=False)

    class Meta:
        name = "NOTE"
        namespace = "NIMBUS_NOTES"
        table = "note_meta"
        sync_fields = ["slug", "locked"]

    def before_create(self) -> None:
        if not self.get("slug"):
            self.set("slug", self.get("body").lower().replace(" ", "-")[:40])

    def before_update(self, changes: dict[str, Any]) -> None:
        if self.saved_value("locked"):
            raise Rejected("this note is locked")

    def before_delete(self) -> None:
        if self.get("locked"):
            raise Rejected("a locked note cannot be deleted")


class Setting(DataModel):
    """Public, untracked, hard-deleted: every option turned off."""

    key = fields.String(primary_key=True)
    value = fields.String()

    class Meta:
        name = "SETTING"
        namespace = "NIMBUS_SETTINGS"
        table = "setting_meta"
        sync_fields = ["value"]
        timestamps = False
        soft_delete = False
        user_tracking = False
        auth = False


class Workspace(DataModel):
    """A parent: tasks (CASCADE), pins (PROTECT) and memos (SET_NULL) reference it."""

    workspace_id = fields.String(primary_key=True, generator=ids.uuid4)
    title = fields.String()

    class Meta:
        name = "WORKSPACE"
        namespace = "NIMBUS_WORK"
        table = "workspace_meta"
        sync_fields = ["title"]


class Task(DataModel):
    """A CASCADE child keyed under its workspace (its KV id is composite), and a parent too:
    of its subtasks (a CASCADE reference to its own model, by class name) and comments."""

    task_id = fields.String(primary_key=True, generator=ids.uuid4)
    workspace = fields.Reference("WORKSPACE", on_delete=CASCADE, required=True)
    parent = fields.Reference("Task", on_delete=CASCADE)
    title = fields.String()

    class Meta:
        name = "TASK"
        namespace = "NIMBUS_WORK"
        key_pattern = "task:{workspace}:{task_id}"
        table = "task_meta"
        sync_fields = ["title"]


class Comment(DataModel):
    """A CASCADE child of a task without soft delete: removed even when its task is only
    soft-deleted."""

    comment_id = fields.String(primary_key=True, generator=ids.uuid4)
    task = fields.Reference(Task, on_delete=CASCADE, required=True)
    body = fields.String()

    class Meta:
        name = "COMMENT"
        namespace = "NIMBUS_WORK"
        table = "comment_meta"
        soft_delete = False


class Pin(DataModel):
    """PROTECT: a pinned workspace cannot be deleted."""

    pin_id = fields.String(primary_key=True, generator=ids.uuid4)
    workspace = fields.Reference(Workspace, on_delete=PROTECT, required=True)

    class Meta:
        name = "PIN"
        namespace = "NIMBUS_WORK"
        table = "pin_meta"


class Memo(DataModel):
    """SET_NULL (its workspace) and DO_NOTHING (the task it mentions)."""

    memo_id = fields.String(primary_key=True, generator=ids.uuid4)
    workspace = fields.Reference("Workspace", on_delete=SET_NULL)
    task = fields.Reference("TASK", on_delete=DO_NOTHING)
    body = fields.String()

    class Meta:
        name = "MEMO"
        namespace = "NIMBUS_WORK"
        table = "memo_meta"


class Plan(DataModel):
    """A model with seeds."""

    code = fields.String(primary_key=True)
    label = fields.String()

    class Meta:
        name = "PLAN"
        namespace = "NIMBUS_PLANS"
        table = "plan_meta"
        sync_fields = ["label"]
        user_tracking = False
        seeds = [
            Seed(
                "if_missing",
                {"code": "free", "label": "${PLAN_FREE_LABEL}"},
                key=["code"],
                when_env="PLAN_FREE_LABEL",
            ),
            Seed("if_empty", {"code": "starter", "label": "Starter"}),
            Seed(
                "always",
                {"code": "pro", "label": "Pro ${PLAN_YEAR}"},
                key=["code"],
                when_env="PLAN_YEAR",
            ),
        ]


class Member(DataModel):
    """Unique constraints: an email kept by deleted members, a handle released on delete, and
    a seat unique per team. Not in ``ALL_TEST_MODELS``: its tests make its table themselves."""

    member_id = fields.String(primary_key=True, generator=ids.uuid4)
    team_id = fields.String(required=True)
    email = fields.String(unique=True)
    handle = fields.String(unique=True, release_on_delete=True)
    seat = fields.Integer()
    bio = fields.Text()

    class Meta:
        name = "MEMBER"
        namespace = "NIMBUS_MEMBERS"
        table = "member_meta"
        unique_together = [("team_id", "seat")]


class Folder(DataModel):
    """A listing: ``folders:{user_id}`` in the WORKSPACE class's namespace lists each owner's
    live folders as ``folder-{folder_id}``; ``opened`` is stamped on create. Not in
    ``ALL_TEST_MODELS``: its tests make its table themselves."""

    folder_id = fields.String(primary_key=True, generator=ids.uuid4)
    title = fields.String()
    opened = fields.Timestamp(auto_now_add=True)
    touched = fields.Timestamp(auto_now=True)

    class Meta:
        name = "FOLDER"
        namespace = "NIMBUS_WORK"
        table = "folder_meta"
        sync_fields = ["title"]
        listings = [Listing("folders", item="folder-{pk}", stored_with="WORKSPACE")]


MEMBER_META = {"name": "MEMBER", "namespace": "NIMBUS_MEMBERS", "table": "member_meta"}


def redeclare_member(meta: dict[str, Any] | None = None, **changed: Any) -> type[DataModel]:
    """Another version of MEMBER, as an edited models.py would declare it (same name, table
    and KV class): plain fields, no constraint, unless ``meta`` and ``changed`` fields say
    otherwise (a field given as ``None`` is left out). Call ``restore_member()`` afterwards."""
    registry.unregister("MEMBER")
    model_fields: dict[str, Any] = {
        "member_id": fields.String(primary_key=True, generator=ids.uuid4),
        "team_id": fields.String(required=True),
        "email": fields.String(),
        "handle": fields.String(),
        "seat": fields.Integer(),
        "bio": fields.Text(),
        **changed,
    }
    attrs = {name: value for name, value in model_fields.items() if value is not None}
    attrs["Meta"] = type("Meta", (), {**MEMBER_META, **(meta or {})})
    return type("Member", (DataModel,), attrs)


def restore_member() -> None:
    """Register the declared MEMBER again, after ``redeclare_member``."""
    registry.unregister("MEMBER")
    registry.register(Member)


TEST_MODELS = [Page, Note, Setting, Workspace, Task, Comment, Pin, Memo]
ALL_TEST_MODELS = [*TEST_MODELS, Plan]
