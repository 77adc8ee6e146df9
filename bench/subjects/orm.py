"""Django's ORM: ``OrmPage`` (the same fields, indexes and soft delete) on a SQLite file; its
rows carry the owner (``created_by``) as the project's carry ``user_id``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from . import PROJECT_ID, USER_ID, VALUES_FIELDS, page_id, page_values


class OrmPages:
    name = "django"

    def __init__(self) -> None:
        from django.db import connection

        from bench.djangoapp.models import OrmPage

        self.model = OrmPage
        self.queries = 0
        connection.execute_wrappers.append(self._count)  # counts every query from now on

    def _count(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        self.queries += 1
        return execute(sql, params, many, context)

    def create(self, number: int) -> None:
        self.model.objects.create(**page_values(number), created_by=USER_ID)

    def _get(self, number: int) -> Any:
        return self.model.objects.get(pk=page_id(number), deleted_at__isnull=True)

    def get(self, number: int) -> None:
        self._get(number)

    def update(self, number: int) -> None:
        page = self._get(number)
        page.priority = page.priority % 10 + 1
        page.version += 1
        page.save()

    def soft_delete(self, number: int) -> None:
        page = self._get(number)
        page.deleted_at = datetime.now(UTC)
        page.version += 1
        page.save(update_fields=["deleted_at", "version", "updated_at"])

    def page(self) -> None:
        pages = self.model.objects.filter(
            project_id=PROJECT_ID, status="queued", deleted_at__isnull=True
        ).order_by("-priority", "-page_id")
        list(pages[:21])
        pages.count()

    page_with_data = page  # an ORM row already holds the whole object

    # The owner's pages, as the project's queries in the owner's scope (same index, no sort).
    def values_page(self) -> None:
        pages = self.model.objects.filter(
            project_id=PROJECT_ID, status="queued", deleted_at__isnull=True, created_by=USER_ID
        ).order_by("-priority", "-page_id")
        list(pages.values(*VALUES_FIELDS)[:20])

    def aggregate_status(self) -> None:
        from django.db.models import Count

        pages = self.model.objects.filter(
            project_id=PROJECT_ID, deleted_at__isnull=True, created_by=USER_ID
        )
        list(pages.values("status").annotate(n=Count("pk")).order_by("status"))

    def bulk_create(self, numbers: range) -> None:
        self.model.objects.bulk_create(
            [self.model(**page_values(number), created_by=USER_ID) for number in numbers]
        )

    def round_trips(self) -> tuple[int, int] | None:
        return 0, self.queries

    def close(self) -> None:
        pass
