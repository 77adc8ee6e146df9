"""``manage.py nimbus_gateway config|status``: the gateway Worker's wrangler configuration from
the project's settings, and a check of the running gateway against them."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from datastore import DatastoreError
from nimbus import gateway


class Command(BaseCommand):
    help = (
        "config: print the wrangler configuration of the gateway Worker (worker/gateway.js) "
        "for the configured namespaces. status: ask the configured gateway for its plan, "
        "limits and bindings, and exit 1 if they do not fit the settings."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="config|status")
        config = actions.add_parser("config", help="Print wrangler.toml (or wrangler.json).")
        config.add_argument("--format", choices=("toml", "json"), default="toml")
        config.add_argument("--name", default="nimbus-gateway", help="The Worker's name.")
        config.add_argument(
            "--plan",
            choices=("free", "paid"),
            help="The account's Workers plan (default: the gateway backends' plan, else paid).",
        )
        config.add_argument(
            "--database-name", default="nimbus", help="The D1 database (wrangler d1 create NAME)."
        )
        config.add_argument(
            "--max-body-bytes",
            type=int,
            help="NIMBUS_GATEWAY_MAX_BODY_BYTES (default 32 MiB; a Worker has 128 MB of memory).",
        )
        status = actions.add_parser("status", help="Check the running gateway.")
        status.add_argument("--json", action="store_true", help="One JSON object on stdout.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["action"] == "config":
                self.config(options)
            else:
                self.status(options)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc

    def config(self, options: dict[str, Any]) -> None:
        body = options["max_body_bytes"]
        if body is not None and body < 1:
            raise CommandError("--max-body-bytes must be a positive number of bytes")
        deploy = gateway.deployment(
            name=options["name"],
            plan=options["plan"],
            database_name=options["database_name"],
            max_body_bytes=body,
        )
        render = gateway.render_json if options["format"] == "json" else gateway.render_toml
        self.stdout.write(render(deploy), ending="")

    def status(self, options: dict[str, Any]) -> None:
        try:
            report = gateway.status()
        except DatastoreError as exc:
            raise CommandError(f"the gateway did not answer: {exc}") from exc
        if options["json"]:
            self.stdout.write(
                json.dumps({**report.described, "url": report.url, "problems": report.problems})
            )
        else:
            limits = ", ".join(f"{key} {value}" for key, value in report.limits.items())
            self.stdout.write(f"gateway {report.url}: protocol v{report.described.get('version')}")
            self.stdout.write(f"plan: {report.plan}")
            self.stdout.write(f"limits: {limits}")
            self.stdout.write(f"D1: {'bound' if report.described.get('d1') else 'not bound'}")
            self.stdout.write(f"namespaces bound: {', '.join(report.bound) or 'none'}")
            for problem in report.problems:
                self.stderr.write(f"problem: {problem}")
        if report.problems:
            raise CommandError(f"{len(report.problems)} problem(s) with the gateway")
