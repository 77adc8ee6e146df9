"""``manage.py nimbus_sync``: check every metadata row against its KV object; ``--repair``
rebuilds the rows from KV (the source of truth). Streams in batches; safe while serving.

Values of unique constraints held by several objects, and objects sharing a primary key, are
listed, never repaired: ``--check`` and ``--repair`` exit with status 1 while any remain, since
a person must decide.

Then the page lifecycle of every live project (``lifecycle.reconcile``): where its queue,
status objects, batch page maps and usage counters disagree with its pages; ``--repair`` sets
them from the pages, after the metadata rows (the pages are read from them). It runs unless
``--model`` names none of the models it reads (PROJECT, PAGE, BATCH, QUEUE, STATUS).

And what else is derived from the rows: every model's listings (``projects:{user_id}``,
``apikeys:{user_id}``) and the ``email:{email}`` lookups; ``--repair`` rewrites those that
differ."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from datamodel import (
    DoesNotExist,
    ListingReport,
    Scope,
    SyncReport,
    registry,
    verify,
    verify_listings,
)
from datamodel.repair import DUPLICATES_HINT, SHARED_KEYS_HINT
from datastore import Conflict, DatastoreError
from nimbus import conf, lifecycle
from nimbus.lookups import LookupReport, verify_lookups
from nimbus.management.pacing import budget_note, paced
from nimbus.models import Batch, Page, PageStatus, Project, Queue

LIFECYCLE_MODELS = {model._meta.name for model in (Project, Page, Batch, Queue, PageStatus)}
LISTED = 10  # the disagreements listed per project below verbosity 2


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
                note = budget_note(budgets)
                self.stderr.write(f"  {report.model}: {report.checked} checked{note}")

        def say(line: str) -> None:
            if verbosity >= 1:
                self.stderr.write(line)

        with paced(say) as budgets:
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
                checked = {model._meta.name for model in models or list(registry)}
                listings: list[ListingReport] = []
                for model in models or list(registry):
                    listings += verify_listings(
                        connection,
                        model,
                        repair=options["repair"],
                        batch_size=options["batch_size"],
                    )
                lookups: LookupReport | None = None
                if "EMAIL" in checked:  # the users are read from their rows
                    lookups = verify_lookups(connection, repair=options["repair"])
                cycle = (
                    self._lifecycle(connection, options["repair"])
                    if checked & LIFECYCLE_MODELS
                    else None
                )
            except DatastoreError as exc:
                raise CommandError(f"nimbus_sync failed: {exc}") from exc

        derived = sum(report.drifted for report in listings) + (lookups.drift if lookups else 0)
        drift = sum(report.drift for report in reports) + derived
        disagreements = cycle["drift"] if cycle else 0
        unrepaired = [entry for entry in cycle["projects"] if entry["error"]] if cycle else []
        rows = sum(report.repairable for report in reports)
        repairable = rows + derived
        duplicates = sum(report.duplicates for report in reports)
        shared = sum(report.shared_keys for report in reports)
        if options["json"]:
            report_json: dict[str, Any] = {
                "models": [r.to_json() for r in reports],
                "listings": [r.to_json() for r in listings],
                "lookups": lookups.to_json() if lookups else None,
                "drift": drift + disagreements,
            }
            if cycle is not None:
                report_json["lifecycle"] = cycle
            self.stdout.write(json.dumps(report_json))
        else:
            for report in reports:
                self._report(report, options["repair"], verbosity)
            self._report_derived(listings, lookups, options["repair"], verbosity)
            if cycle is not None:
                self._report_lifecycle(cycle, options["repair"], verbosity)
            if repairable and not options["repair"]:
                self.stdout.write("Run with --repair to rebuild the metadata from KV.")
            if disagreements and not options["repair"]:
                self.stdout.write("Run with --repair to set the lifecycle from the pages.")
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
        if options["check"] and (repairable or disagreements) and not options["repair"]:
            found = []
            if rows:
                found.append(f"{rows} rows drifted from KV")
            if derived:
                found.append(f"{derived} lists or email lookups differ from the rows")
            if disagreements:
                projects = sum(1 for entry in cycle["projects"] if entry["found"]) if cycle else 0
                found.append(
                    f"{disagreements} lifecycle disagreements with the pages in {projects} projects"
                )
            also = f" and {'; '.join(decisions)}: they need a decision" if decisions else ""
            raise CommandError(f"{'; '.join(found)}{also}", returncode=1)
        if options["repair"] and unrepaired:
            names = ", ".join(entry["project_id"] for entry in unrepaired)
            raise CommandError(
                f"the lifecycle of {names} changed while it was repaired: run --repair again",
                returncode=1,
            )
        if (options["check"] or options["repair"]) and decisions:
            raise CommandError(
                f"{'; '.join(decisions)}: not repaired, they need a decision", returncode=1
            )

    def _lifecycle(self, connection: Any, repair: bool) -> dict[str, Any]:
        """``lifecycle.reconcile`` for every live project: what it found in each (and, with
        ``repair``, whether the repair went through)."""
        system = Scope(connection, None)
        entries = []
        project_ids = Project.objects.bind(system).filter().values_list("project_id", flat=True)
        for project_id in project_ids.iterator():
            entry: dict[str, Any] = {"project_id": project_id, "found": [], "error": None}
            try:
                entry["found"] = lifecycle.reconcile(system, project_id, repair=repair)
            except DoesNotExist:
                continue  # deleted since it was listed
            except Conflict as exc:  # a batch or status object moved while it was repaired
                entry["error"] = str(exc) or "changed meanwhile"
            entries.append(entry)
        drift = sum(len(entry["found"]) for entry in entries)
        repaired = sum(len(entry["found"]) for entry in entries if repair and not entry["error"])
        return {
            "checked": len(entries),
            "drift": drift,
            "repaired": repaired,
            "projects": [entry for entry in entries if entry["found"] or entry["error"]],
        }

    def _report_lifecycle(self, cycle: dict[str, Any], repair: bool, verbosity: int) -> None:
        drifted = [entry for entry in cycle["projects"] if entry["found"]]
        line = (
            f"lifecycle: {cycle['checked']} projects checked, {len(drifted)} drifted, "
            f"{cycle['drift']} disagreements with their pages"
        )
        if repair:
            line += f", {cycle['repaired']} repaired"
        style = self.style.WARNING if cycle["drift"] else self.style.SUCCESS
        self.stdout.write(style(line))
        for entry in cycle["projects"]:
            shown = entry["found"] if verbosity >= 2 else entry["found"][:LISTED]
            for found in shown:
                self.stdout.write(f"    {entry['project_id']}: {found}")
            if len(entry["found"]) > len(shown):
                more = len(entry["found"]) - len(shown)
                self.stdout.write(f"    {entry['project_id']}: ... and {more} more")
            if entry["error"]:
                self.stdout.write(
                    self.style.ERROR(f"    {entry['project_id']}: not repaired: {entry['error']}")
                )

    def _report_derived(
        self,
        listings: list[ListingReport],
        lookups: LookupReport | None,
        repair: bool,
        verbosity: int,
    ) -> None:
        lines = [
            (
                f"{report.model} lists {report.listing}:{{{report.pointer}}}: {report.checked} "
                f"checked, {report.drifted} differ from the rows",
                report.drifted,
                report.repaired,
                report.examples,
            )
            for report in listings
        ]
        if lookups is not None:
            lines.append(
                (
                    f"EMAIL lookups: {lookups.checked} checked, {lookups.missing} missing, "
                    f"{lookups.stale} stale",
                    lookups.drift,
                    lookups.repaired,
                    lookups.examples,
                )
            )
        for line, drift, repaired, examples in lines:
            if repair:
                line += f", {repaired} repaired"
            self.stdout.write((self.style.WARNING if drift else self.style.SUCCESS)(line))
            for example in examples if verbosity >= 2 else []:
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
