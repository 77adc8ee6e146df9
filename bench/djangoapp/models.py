"""``OrmPage``: the same fields as the DataModel ``Page`` (its sync fields as columns, the rest as
JSON), the same indexes, soft delete and a version counter, so both do comparable work."""

from __future__ import annotations

from django.db import models

STATUSES = [(status, status) for status in ("uploaded", "queued", "processing", "done", "failed")]


class OrmPage(models.Model):
    page_id = models.CharField(primary_key=True, max_length=40)
    project_id = models.CharField(max_length=64)
    batch_id = models.CharField(max_length=64, null=True, blank=True)
    source_path = models.CharField(max_length=1024)
    uploaded = models.CharField(max_length=40, null=True, blank=True)
    status = models.CharField(max_length=16, choices=STATUSES, default="uploaded")
    priority = models.IntegerField(default=5)
    extraction = models.JSONField(default=dict)
    optimization = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.CharField(max_length=64, null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    version = models.IntegerField(default=1)

    class Meta:
        app_label = "benchapp"
        indexes = [  # as nimbus.models.Page declares them (user_id is created_by here)
            models.Index(
                fields=["project_id", "deleted_at", "created_at", "page_id", "created_by"],
                name="ormpage_project_created",
            ),
            models.Index(
                fields=[
                    "project_id",
                    "status",
                    "deleted_at",
                    "created_at",
                    "page_id",
                    "created_by",
                ],
                name="ormpage_status_created",
            ),
            models.Index(
                fields=["project_id", "status", "deleted_at", "priority", "page_id", "created_by"],
                name="ormpage_status_priority",
            ),
            models.Index(
                fields=[
                    "project_id",
                    "batch_id",
                    "deleted_at",
                    "created_at",
                    "page_id",
                    "created_by",
                ],
                name="ormpage_batch_created",
            ),
        ]
