"""``manage.py nimbus_backup PATH``: stream every KV key (and the SQL adapter's objects/lists
and the migration log) to a versioned, gzip-compressed JSON-lines file with a checksum."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from datamodel.backup import backup
from datastore import DatastoreError
from nimbus import conf


class Command(BaseCommand):
    help = "Write a backup of the configured stores to PATH (gzip JSON lines with a checksum)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="Where to write the backup (e.g. nimbus.jsonl.gz).")
        parser.add_argument("--json", action="store_true", help="One JSON report on stdout.")

    def handle(self, *args: Any, **options: Any) -> None:
        settings = conf.load_settings()
        connection = conf.get_connection()
        kv = connection.datastore.kv
        sql = conf.sql_database()

        def progress(count: int) -> None:
            if options["verbosity"] >= 1 and not options["json"]:
                self.stderr.write(f"  {count} records")

        try:
            report = backup(
                kv,
                sql,
                options["path"],
                source=f"{settings.kv.backend} + {settings.d1.backend}",
                progress=progress,
            )
        except (DatastoreError, OSError) as exc:
            raise CommandError(f"backup failed: {exc}") from exc
        if options["json"]:
            self.stdout.write(json.dumps(report.to_json()))
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Backed up {report.kv_keys} KV keys and {report.sql_rows} SQL rows to "
                    f"{options['path']} (sha256 {report.sha256[:16]}..., {report.duration_ms} ms)."
                )
            )
