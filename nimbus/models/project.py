"""Projects (``project:{project_id}`` in NIMBUS_PROJECTS), with settings and usage counters."""

from __future__ import annotations

from typing import Any

from datamodel import DataModel, Listing, fields, ids


def default_settings() -> dict[str, Any]:
    return {
        "tone": "professional",
        "max_pages_per_batch": 1000,
        "default_concurrency": 5,
        "ai_model": "gpt-4",
        "domain": "",
    }


def default_usage() -> dict[str, Any]:
    return {"total_pages": 0, "total_batches": 0, "last_activity": None}


class Project(DataModel):
    project_id = fields.String(primary_key=True, generator=ids.project_id)
    name = fields.String(required=True, max_length=200)
    settings = fields.JSON(default_factory=default_settings)
    usage = fields.JSON(default_factory=default_usage)
    user_email = fields.String()  # denormalized owner data: no second lookup to show it
    created = fields.Timestamp(auto_now_add=True)  # the spec's name for the creation time

    class Meta:
        name = "PROJECT"
        namespace = "NIMBUS_PROJECTS"
        key_pattern = "project:{project_id}"
        table = "project_meta"
        sync_fields = ["name"]
        # projects:{user_id} in NIMBUS_USERS: the owner's live project ids, for Workers
        listings = [Listing("projects", pointer="user_id", stored_with="USER")]
