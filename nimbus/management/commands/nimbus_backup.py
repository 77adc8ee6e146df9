"""``manage.py nimbus_backup PATH``: stream every KV key (and the SQL adapter's objects/lists
and the migration log) to a versioned, gzip-compressed JSON-lines file with a checksum.

Sessions (``session:`` keys in NIMBUS_SESSIONS: replaying one signs its user in) and the cache
namespace (cached values and rate-limit counters) are left out unless asked for. The file is
created readable by its owner only (0600), and never over an existing file without ``--force``.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from datamodel.backup import KeyRange, backup
from datastore import DatastoreError
from nimbus import conf
from nimbus.backups import cache_ranges, session_ranges
from nimbus.management.pacing import budget_note, paced


class Command(BaseCommand):
    help = "Write a backup of the configured stores to PATH (gzip JSON lines with a checksum)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="Where to write the backup (e.g. nimbus.jsonl.gz).")
        parser.add_argument(
            "--include-sessions",
            action="store_true",
            help="Keep the sign-in sessions (session: keys in NIMBUS_SESSIONS). Anyone holding "
            "the file can then sign in as their users.",
        )
        parser.add_argument(
            "--include-cache",
            action="store_true",
            help="Keep the cache namespace (cached values and rate-limit counters).",
        )
        parser.add_argument(
            "--force", action="store_true", help="Replace PATH if it already exists."
        )
        parser.add_argument("--json", action="store_true", help="One JSON report on stdout.")

    def handle(self, *args: Any, **options: Any) -> None:
        settings = conf.load_settings()
        connection = conf.get_connection()
        kv = connection.datastore.kv
        sql = conf.sql_database()
        exclude: list[KeyRange] = []
        try:
            if not options["include_sessions"]:
                exclude += session_ranges()
            if not options["include_cache"]:
                exclude += cache_ranges()
        except ImproperlyConfigured as exc:
            raise CommandError(f"backup refused: {exc}") from exc

        quiet = options["verbosity"] < 1 or options["json"]

        def say(line: str) -> None:
            if not quiet:
                self.stderr.write(line)

        path = options["path"]
        with paced(say) as budgets:
            try:
                report = backup(
                    kv,
                    sql,
                    path,
                    source=f"{settings.kv.backend} + {settings.d1.backend}",
                    progress=lambda count: say(f"  {count} records{budget_note(budgets)}"),
                    exclude=exclude,
                    overwrite=options["force"],
                )
            except FileExistsError as exc:
                raise CommandError(
                    f"{path} already exists: nimbus_backup does not write over a file; choose "
                    "another path, or give --force to replace it"
                ) from exc
            except (DatastoreError, OSError) as exc:
                raise CommandError(f"backup failed: {exc}") from exc
        left_out = [
            name
            for name, flag in (("sessions", "include_sessions"), ("cache", "include_cache"))
            if not options[flag]
        ]
        if options["json"]:
            self.stdout.write(json.dumps({**report.to_json(), "left_out": left_out}))
        else:
            without = f" (without {' and '.join(left_out)})" if left_out else ""
            self.stdout.write(
                self.style.SUCCESS(
                    f"Backed up {report.kv_keys} KV keys and {report.sql_rows} SQL rows to "
                    f"{path}{without} (sha256 {report.sha256[:16]}..., {report.duration_ms} ms)."
                )
            )
