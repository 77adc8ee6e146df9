"""``manage.py nimbus_sync``: check every metadata row against its KV object; ``--repair``
rebuilds the rows from KV (the source of truth). Streams in batches; safe while serving."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from datamodel import SyncReport, registry, verify
from datastore import DatastoreError
from nimbus import conf


class Command(BaseCommand):
    help = (
        "Verify that every DataModel metadata row matches its KV object (missing, stale and "
        "orphan rows); with --repair, rebuild the rows from KV."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--repair", action="store_true", help="Fix every drift found.")
        parser.add_argument(
            "--model", action="append", dest="models", metavar="NAME", help="Only this model."
        )
        parser.add_argument(
            "--batch-size", type=int, default=500, help="Objects per batch (default 500)."
        )
        parser.add_argument("--json", action="store_true", help="One JSON report on stdout.")
        parser.add_argument(
            "--check", action="store_true", help="Exit with status 1 if any drift is found."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        try:
            models = [registry.get(name.upper()) for name in options["models"] or []]
        except LookupError as exc:
            raise CommandError(str(exc)) from exc
        verbosity = 0 if options["json"] else options["verbosity"]
        connection = conf.get_connection()
        reports: list[SyncReport] = []

        def progress(report: SyncReport) -> None:
            if verbosity >= 2:
                self.stderr.write(f"  {report.model}: {report.checked} checked")

        try:
            for model in models or list(registry):
                reports.append(
                    verify(
                        connection,
                        model,
                        repair=options["repair"],
                        batch_size=options["batch_size"],
                        progress=progress,
                    )
                )
        except DatastoreError as exc:
            raise CommandError(f"nimbus_sync failed: {exc}") from exc

        drift = sum(report.drift for report in reports)
        if options["json"]:
            self.stdout.write(
                json.dumps({"models": [r.to_json() for r in reports], "drift": drift})
            )
        else:
            for report in reports:
                line = (
                    f"{report.model}: {report.checked} checked, {report.missing} missing, "
                    f"{report.stale} stale, {report.orphans} orphan"
                )
                if options["repair"]:
                    line += f", {report.repaired} repaired"
                style = self.style.WARNING if report.drift else self.style.SUCCESS
                self.stdout.write(style(line))
                if verbosity >= 2:
                    for example in report.examples:
                        self.stdout.write(f"    {example}")
            if drift and not options["repair"]:
                self.stdout.write("Run with --repair to rebuild the metadata from KV.")
        if options["check"] and drift and not options["repair"]:
            raise CommandError(f"{drift} rows drifted from KV", returncode=1)
