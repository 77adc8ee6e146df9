"""``manage.py bench_round_trips``: the storage round trips of single API requests, measured
in-process with Django's test client on the configured stores, for ``python -m bench api``.

Prints one JSON object: per request, the KV and metadata-SQL round trips (the store counters)
and the Django database queries, with the API throttle and, for Nimbus, without it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from unittest import mock

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from datastore import Pending, RateLimiterClient, StartedCheck
from nimbus import conf
from nimbus.api.projects import PageViewSet, ProjectViewSet


def _uncounted(
    limiter: RateLimiterClient,
    combined: object,
    identifier: str,
    window: int,
    key_prefix: str = "",
) -> StartedCheck:
    """A rate-limit check that counts nothing (authentication gathers the count with the key
    reads; this leaves it out)."""
    return StartedCheck(limiter, identifier, Pending.run(lambda: 0), 0.0, 0.0)


@contextmanager
def without_throttle() -> Iterator[None]:
    """The Nimbus viewsets with no throttle and authentication counting nothing, to separate
    the counter increment."""
    with ExitStack() as stack:
        for viewset in (ProjectViewSet, PageViewSet):
            stack.enter_context(mock.patch.object(viewset, "throttle_classes", []))
        stack.enter_context(mock.patch.object(RateLimiterClient, "start_check", _uncounted))
        yield


class Command(BaseCommand):
    help = "Print the storage round trips of a project read, a page detail and a page list."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--key", required=True, help="A Nimbus API key (sk_live_...).")
        parser.add_argument("--token", required=True, help="A DRF token for the ORM viewset.")
        parser.add_argument("--project", required=True)
        parser.add_argument("--page", required=True, help="An existing page id.")

    def handle(self, *args: Any, **options: Any) -> None:
        host = settings.ALLOWED_HOSTS[0] if settings.ALLOWED_HOSTS else "127.0.0.1"
        nimbus = Client(HTTP_HOST=host, HTTP_AUTHORIZATION=f"Bearer {options['key']}")
        orm = Client(HTTP_HOST=host, HTTP_AUTHORIZATION=f"Token {options['token']}")
        project, page = options["project"], options["page"]
        pages = f"/api/projects/{project}/pages/"
        orm_pages = f"/bench/orm/projects/{project}/pages/"
        listing = {"limit": "20", "ordering": "-priority"}
        requests = {
            "nimbus_project_read": (nimbus, f"/api/projects/{project}/", None),
            "nimbus_page_detail": (nimbus, f"{pages}{page}/", None),
            "nimbus_page_list": (nimbus, pages, listing),
            "orm_page_detail": (orm, f"{orm_pages}{page}/", None),
            "orm_page_list": (orm, orm_pages, listing),
        }
        report: dict[str, dict[str, int]] = {}
        for name, (client, path, params) in requests.items():
            report[name] = self.measure(client, path, params)
            if name.startswith("nimbus_"):
                with without_throttle():
                    unthrottled = self.measure(client, path, params)
                report[name].update({f"{k}_without_throttle": v for k, v in unthrottled.items()})
        self.stdout.write(json.dumps(report))

    def measure(self, client: Client, path: str, params: dict[str, str] | None) -> dict[str, int]:
        """Round trips of one warm request (a first, unmeasured one opens connections)."""
        client.get(path, params)
        kv, sql = conf.kv_store().round_trips, conf.sql_database().round_trips
        with (
            kv.track() as kv_delta,
            sql.track() as sql_delta,
            CaptureQueriesContext(connection) as django_queries,
        ):
            response = client.get(path, params)
        if response.status_code != 200:
            raise CommandError(f"GET {path} answered {response.status_code}: {response.content!r}")
        if kv is sql:  # one store for both: only the total is known
            return {"kv_and_sql": kv_delta.count, "django_sql": len(django_queries)}
        return {"kv": kv_delta.count, "sql": sql_delta.count, "django_sql": len(django_queries)}
