"""This project: ``nimbus.models.Page`` through its manager, on the configured stores."""

from __future__ import annotations

from datamodel import Connection, Count

from . import PROJECT_ID, USER_ID, VALUES_FIELDS, page_values


class NimbusPages:
    name = "nimbus"

    def __init__(self, connection: Connection) -> None:
        from nimbus.models import Page, Project

        self.connection = connection
        self.pages = Page.objects.auth(USER_ID, using=connection)
        # A page references its project, which must exist (each create checks it: one KV read).
        Project.objects.auth(USER_ID, using=connection).get_or_create(
            project_id=PROJECT_ID, defaults={"name": "bench"}
        )

    def create(self, number: int) -> None:
        self.pages.create(**page_values(number))

    def get(self, number: int) -> None:
        self.pages.get(project_id=PROJECT_ID, page_id=f"page_{number:012d}")

    def update(self, number: int) -> None:
        page = self.pages.get(project_id=PROJECT_ID, page_id=f"page_{number:012d}")
        page.set("priority", page.get("priority") % 10 + 1)
        page.save()

    def soft_delete(self, number: int) -> None:
        self.pages.delete(project_id=PROJECT_ID, page_id=f"page_{number:012d}")

    def _page_query(self):  # type: ignore[no-untyped-def]
        return (
            self.pages.filter(project_id=PROJECT_ID, status="queued")
            .order_by("priority", "desc")
            .limit(20)
        )

    def page(self) -> None:
        self._page_query().list()

    def page_with_data(self) -> None:
        self._page_query().with_data().list()

    def values_page(self) -> None:
        query = self.pages.query().filter(project_id=PROJECT_ID, status="queued")
        list(query.order_by("-priority").values(*VALUES_FIELDS)[:20])

    def aggregate_status(self) -> None:
        query = self.pages.query().filter(project_id=PROJECT_ID)
        list(query.values("status").annotate(n=Count()))

    def bulk_create(self, numbers: range) -> None:
        self.pages.bulk_create([page_values(number) for number in numbers])

    def round_trips(self) -> tuple[int, int] | None:
        return self.connection.datastore.round_trips.value, self.connection.sql.round_trips.value

    def close(self) -> None:
        pass
