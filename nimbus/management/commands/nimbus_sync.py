"""``manage.py nimbus_sync``: check every metadata row against its KV object; ``--repair``
rebuilds the rows from KV (the source of truth). Streams in batches; safe while serving.

Values of unique constraints held by several objects, and objects sharing a primary key, are
listed, never repaired: ``--check`` and ``--repair`` exit with status 1 while any remain, since
a person must decide."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from datamodel import ListingReport, SyncReport, registry, verify, verify_listings
from datamodel.repair import DUPLICATES_HINT, SHARED_KEYS_HINT
from datastore import DatastoreError
from nimbus import conf
from nimbus.models.email import LookupReport, verify_lookups


class Command(BaseCommand):
    help = (
        "Verify that every DataModel metadata row matches its KV object (missing, stale and "
        "orphan rows, and values of unique constraints held by several objects); with --repair, "
        "rebuild the rows from KV (duplicated values are listed for you to decide)."
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
            "--check",
            action="store_true",
            help="Exit with status 1 if any drift is found (duplicated values too).",
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
            # then what is derived from the rows: per-owner lists and email lookups
            listings: list[ListingReport] = []
            for model in models or list(registry):
                listings += verify_listings(
                    connection, model, repair=options["repair"], batch_size=options["batch_size"]
                )
            lookups: LookupReport | None = None
            if not models or any(model._meta.name == "EMAIL" for model in models):
                lookups = verify_lookups(connection, repair=options["repair"])
        except DatastoreError as exc:
            raise CommandError(f"nimbus_sync failed: {exc}") from exc

        derived = sum(report.drifted for report in listings) + (lookups.drift if lookups else 0)
        drift = sum(report.drift for report in reports) + derived
        rows = sum(report.repairable for report in reports)
        repairable = rows + derived
        duplicates = sum(report.duplicates for report in reports)
        shared = sum(report.shared_keys for report in reports)
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "models": [r.to_json() for r in reports],
                        "listings": [r.to_json() for r in listings],
                        "lookups": lookups.to_json() if lookups else None,
                        "drift": drift,
                    }
                )
            )
        else:
            for report in reports:
                self._report(report, options["repair"], verbosity)
            for listing in listings:
                self._derived(
                    f"{listing.model} lists {listing.listing}:{{{listing.pointer}}}",
                    f"{listing.checked} checked, {listing.drifted} differ from the table",
                    listing.drifted,
                    listing.repaired if options["repair"] else None,
                    listing.examples if verbosity >= 2 else [],
                )
            if lookups is not None:
                self._derived(
                    "EMAIL lookups",
                    f"{lookups.checked} checked, {lookups.missing} missing, {lookups.stale} stale",
                    lookups.drift,
                    lookups.repaired if options["repair"] else None,
                    lookups.examples if verbosity >= 2 else [],
                )
            if repairable and not options["repair"]:
                self.stdout.write("Run with --repair to rebuild the metadata from KV.")
            if duplicates:
                self.stdout.write(self.style.ERROR(DUPLICATES_HINT))
            if shared:
                self.stdout.write(self.style.ERROR(SHARED_KEYS_HINT))
        decisions = []
        if duplicates:
            decisions.append(
                f"{duplicates} values of unique constraints are held by more than one object"
            )
        if shared:
            decisions.append(f"{shared} primary keys are shared by more than one object")
        if options["check"] and repairable and not options["repair"]:
            also = f" and {'; '.join(decisions)}: they need a decision" if decisions else ""
            found = [f"{rows} rows drifted from KV"] if rows else []
            if derived:
                found.append(f"{derived} lists or email lookups differ from the rows")
            raise CommandError(f"{'; '.join(found)}{also}", returncode=1)
        if (options["check"] or options["repair"]) and decisions:
            raise CommandError(
                f"{'; '.join(decisions)}: not repaired, they need a decision", returncode=1
            )

    def _derived(
        self, what: str, line: str, drift: int, repaired: int | None, examples: list[str]
    ) -> None:
        if repaired is not None:
            line += f", {repaired} repaired"
        style = self.style.WARNING if drift else self.style.SUCCESS
        self.stdout.write(style(f"{what}: {line}"))
        for example in examples:
            self.stdout.write(f"    {example}")

    def _report(self, report: SyncReport, repair: bool, verbosity: int) -> None:
        line = (
            f"{report.model}: {report.checked} checked, {report.missing} missing, "
            f"{report.stale} stale, {report.orphans} orphan"
        )
        if report.duplicates:
            line += f", {report.duplicates} duplicated (not repairable)"
        if report.shared_keys:
            line += f", {report.shared_keys} sharing a primary key (not repairable)"
        if repair:
            line += f", {report.repaired} repaired"
        style = self.style.WARNING if report.drift else self.style.SUCCESS
        self.stdout.write(style(line))
        for entry in report.duplicate_values:  # always: each needs a person's decision
            values = ", ".join(f"{name}={value!r}" for name, value in entry["values"].items())
            ids = ", ".join(str(object_id) for object_id in entry["ids"])
            self.stdout.write(f"    duplicate {values}: {ids}")
        for entry in report.shared_key_values:
            self.stdout.write(
                f"    primary key {entry['pk']!r} shared by {', '.join(entry['ids'])}"
            )
        unlisted = report.duplicates - len(report.duplicate_values)
        if unlisted:
            self.stdout.write(f"    ... and {unlisted} more")
        if verbosity >= 2:
            for example in report.examples:
                self.stdout.write(f"    {example}")
