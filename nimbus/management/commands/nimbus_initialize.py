"""``manage.py nimbus_initialize``: create and migrate the metadata tables, then seed.

Idempotent like ``createcachetable``: a second run changes nothing and says so. A new sync
field is backfilled from KV (a progress line every 1,000 objects); a unique index that existing
rows would break is refused, the duplicates listed, and the command exits with status 1 once
everything else is applied (``--dry-run`` too, when it finds one).
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from datamodel import SeedError, initialize, registry
from datastore import DatastoreError
from nimbus import conf
from nimbus.management.pacing import budget_note, paced


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
        parser.add_argument(
            "--batch-size",
            type=int,
            default=500,
            help="KV objects read and written at a time when backfilling (default 500).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        as_json = options["json"]
        verbosity = 0 if as_json else options["verbosity"]
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        try:
            models = [registry.get(name.upper()) for name in options["models"] or []] or None
        except LookupError as exc:
            known = ", ".join(sorted(model._meta.name for model in registry))
            raise CommandError(f"{exc} (known models: {known})") from exc

        def progress(name: str, index: int, total: int) -> None:
            if verbosity >= 2 or (verbosity >= 1 and total > 10):
                self.stderr.write(f"  [{index}/{total}] {name}{budget_note(budgets)}")

        def backfill_progress(name: str, objects: int) -> None:
            if verbosity >= 1:
                note = budget_note(budgets)
                self.stdout.write(f"  backfilling {name}: {objects} objects{note}")

        def say(line: str) -> None:
            if verbosity >= 1:
                self.stderr.write(line)

        try:
            connection = conf.get_connection()
        except DatastoreError as exc:
            raise CommandError(f"initialize failed: {exc}") from exc
        with paced(say) as budgets:
            try:
                report = initialize(
                    connection,
                    models,
                    dry_run=options["dry_run"],
                    seeds=not options["no_seeds"],
                    progress=progress,
                    batch_size=options["batch_size"],
                    backfill_progress=backfill_progress,
                )
            except (DatastoreError, SeedError) as exc:
                raise CommandError(f"initialize failed: {exc}") from exc

        if as_json:
            self.stdout.write(json.dumps(report.to_json()))
        else:
            self._text(report, options, verbosity)
        if report.refused:
            indexes = ", ".join(refused["index"] for refused in report.refused)
            raise CommandError(
                f"refused {len(report.refused)} unique index(es) over duplicated values: {indexes}"
            )

    def _text(self, report: Any, options: dict[str, Any], verbosity: int) -> None:
        if options["dry_run"]:
            if report.statements:
                self.stdout.write(self.style.MIGRATE_HEADING("SQL that would run:"))
                for statement in report.statements:
                    self.stdout.write(self.style.SQL_KEYWORD(statement.rstrip() + ";"))
            elif not (report.backfills or report.refused):
                self.stdout.write("No changes: the database is up to date.")
        self._summary(report, verbosity)
        self._refused(report)

    def _summary(self, report: Any, verbosity: int) -> None:
        for warning in report.warnings:
            self.stderr.write(self.style.WARNING(f"warning: {warning}"))
        if report.dry_run:
            for backfill in report.backfills:
                self.stdout.write(
                    f"  would backfill {backfill['table']} ({', '.join(backfill['columns'])}) "
                    f"from {backfill['objects']} KV objects"
                )
        if verbosity < 1 or report.dry_run:
            return
        for table in report.tables_created:
            self.stdout.write(f"  created table {table}")
        for column in report.columns_added:
            self.stdout.write(f"  added column {column['table']}.{column['column']}")
        for backfill in report.backfills:
            self.stdout.write(
                f"  backfilled {backfill['table']} ({', '.join(backfill['columns'])}) "
                f"from {backfill['objects']} KV objects"
            )
        for index in report.indexes_dropped:
            self.stdout.write(f"  dropped index {index['index']}")
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
        elif not report.refused:
            self.stdout.write(self.style.SUCCESS("No changes: the database is up to date."))

    def _refused(self, report: Any) -> None:
        for refused in report.refused:
            fields = ", ".join(refused["fields"])
            self.stdout.write(
                self.style.ERROR(
                    f"Refused unique index {refused['index']} on {refused['table']} ({fields}): "
                    f"{refused['duplicates']} value(s) are held by more than one object"
                    + (
                        " (the first ones):"
                        if refused["duplicates"] > len(refused["groups"])
                        else ":"
                    )
                )
            )
            for group in refused["groups"]:
                values = ", ".join(f"{name}={value!r}" for name, value in group["values"].items())
                more = group["count"] - len(group["ids"])
                ids = ", ".join(str(object_id) for object_id in group["ids"])
                self.stdout.write(f"    {values}: {ids}" + (f" and {more} more" if more else ""))
            self.stdout.write(f"  {refused['hint']}")
