"""``manage.py nimbus_initialize``: create and migrate the metadata tables, then seed.

Idempotent like ``createcachetable``: a second run changes nothing and says so.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from datamodel import SeedError, initialize, registry
from datastore import DatastoreError
from nimbus import conf


class Command(BaseCommand):
    help = (
        "Create missing metadata tables, columns and indexes for every DataModel (and the D1 "
        "objects/lists tables when that adapter is configured), run seeds, and record each "
        "change in _nimbus_migrations. Safe to run repeatedly."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Print the SQL that would run; change nothing."
        )
        parser.add_argument(
            "--json", action="store_true", help="Print one JSON report on stdout and nothing else."
        )
        parser.add_argument(
            "--model",
            action="append",
            dest="models",
            metavar="NAME",
            help="Only this model (repeatable), e.g. --model PAGE.",
        )
        parser.add_argument("--no-seeds", action="store_true", help="Do not run seeds.")

    def handle(self, *args: Any, **options: Any) -> None:
        as_json = options["json"]
        verbosity = 0 if as_json else options["verbosity"]
        try:
            models = [registry.get(name.upper()) for name in options["models"] or []] or None
        except LookupError as exc:
            known = ", ".join(sorted(model._meta.name for model in registry))
            raise CommandError(f"{exc} (known models: {known})") from exc

        def progress(name: str, index: int, total: int) -> None:
            if verbosity >= 2 or (verbosity >= 1 and total > 10):
                self.stderr.write(f"  [{index}/{total}] {name}")

        try:
            report = initialize(
                conf.get_connection(),
                models,
                dry_run=options["dry_run"],
                seeds=not options["no_seeds"],
                progress=progress,
            )
        except (DatastoreError, SeedError) as exc:
            raise CommandError(f"initialize failed: {exc}") from exc

        if as_json:
            self.stdout.write(json.dumps(report.to_json()))
            return
        if options["dry_run"]:
            if report.statements:
                self.stdout.write(self.style.MIGRATE_HEADING("SQL that would run:"))
                for statement in report.statements:
                    self.stdout.write(self.style.SQL_KEYWORD(statement.rstrip() + ";"))
            else:
                self.stdout.write("No changes: the database is up to date.")
        self._summary(report, verbosity)

    def _summary(self, report: Any, verbosity: int) -> None:
        for warning in report.warnings:
            self.stderr.write(self.style.WARNING(f"warning: {warning}"))
        if verbosity < 1 or report.dry_run:
            return
        for table in report.tables_created:
            self.stdout.write(f"  created table {table}")
        for column in report.columns_added:
            self.stdout.write(f"  added column {column['table']}.{column['column']}")
        if verbosity >= 2:
            for index in report.indexes_created:
                self.stdout.write(f"  created index {index['index']}")
        for seed in report.seeds_run:
            if seed["records"] or verbosity >= 2:
                self.stdout.write(
                    f"  seed {seed['model']} ({seed['condition']}): {seed['records']} written"
                )
        if report.changed:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Initialized: {len(report.tables_created)} tables, "
                    f"{len(report.columns_added)} columns, {len(report.indexes_created)} "
                    f"indexes, {sum(s['records'] for s in report.seeds_run)} seeded "
                    f"({report.duration_ms} ms)."
                )
            )
        else:
            self.stdout.write(self.style.SUCCESS("No changes: the database is up to date."))
