"""``manage.py bench_orm_load ROWS.json``: the ORM baseline's data for ``python -m bench api``.

Creates a Django user with a DRF token, bulk-inserts the page rows (a JSON list of ``OrmPage``
fields) and prints the token's key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from rest_framework.authtoken.models import Token

from bench.djangoapp.models import OrmPage


class Command(BaseCommand):
    help = "Load OrmPage rows from a JSON file for a new token user; print the token's key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("rows", help="A JSON file: a list of OrmPage field dicts.")
        parser.add_argument("--username", default="bench-orm")

    def handle(self, *args: Any, **options: Any) -> None:
        rows = json.loads(Path(options["rows"]).read_text())
        with transaction.atomic():
            user = get_user_model().objects.create_user(username=options["username"])
            token = Token.objects.create(user=user)
            OrmPage.objects.bulk_create((OrmPage(**row) for row in rows), batch_size=500)
        self.stdout.write(token.key)
