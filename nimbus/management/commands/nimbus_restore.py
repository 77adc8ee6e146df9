"""``manage.py nimbus_restore PATH``: load a backup into the configured stores (any backend),
then rebuild the metadata tables from KV. A non-empty target is refused unless ``--merge``.

The file's SHA-256 is recomputed as ``nimbus_backup`` computes it and must match the one in
the file (and ``--sha256``, the one ``nimbus_backup`` reported, if given) before anything is
written; the report shows it. The migration log is merged without duplicates. Sessions and
cache entries already in the target (an operator's own sign-in, rate-limit counters) do not
make it "hold data"."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from datamodel import initialize, registry, verify
from datamodel.backup import restore
from datastore import DatastoreError
from nimbus import conf
from nimbus.backups import cache_ranges, session_ranges


class Command(BaseCommand):
    help = "Restore a backup made by nimbus_backup into the configured stores."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path")
        parser.add_argument(
            "--merge",
            choices=["overwrite", "skip"],
            help="Restore into a store that already holds data: replace or keep existing keys.",
        )
        parser.add_argument(
            "--sha256",
            help="The checksum nimbus_backup reported: refuse the file if its own differs.",
        )
        parser.add_argument(
            "--no-rebuild", action="store_true", help="Do not rebuild the metadata tables."
        )
        parser.add_argument("--json", action="store_true", help="One JSON report on stdout.")

    def handle(self, *args: Any, **options: Any) -> None:
        connection = conf.get_connection()
        sql = conf.sql_database()

        def progress(count: int) -> None:
            if options["verbosity"] >= 1 and not options["json"]:
                self.stderr.write(f"  {count} records")

        try:
            report = restore(
                connection.datastore.kv,
                sql,
                options["path"],
                merge=options["merge"] or "refuse",
                progress=progress,
                sha256=options["sha256"],
                ignore=[*session_ranges(), *cache_ranges()],
            )
            repaired = 0
            if not options["no_rebuild"]:
                initialize(connection, seeds=False)
                repaired = sum(
                    verify(connection, model, repair=True).repaired for model in registry
                )
        except (DatastoreError, OSError, ValueError, ImproperlyConfigured) as exc:
            raise CommandError(f"restore failed: {exc}") from exc
        if options["json"]:
            self.stdout.write(json.dumps({**report.to_json(), "metadata_rows_rebuilt": repaired}))
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Restored {report.kv_keys} KV keys and {report.sql_rows} SQL rows "
                    f"({report.skipped} skipped) from {options['path']} (sha256 "
                    f"{report.sha256[:16]}...); {repaired} metadata rows rebuilt."
                )
            )
