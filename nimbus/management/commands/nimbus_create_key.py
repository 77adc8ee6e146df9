"""``manage.py nimbus_create_key EMAIL``: issue an API key for a user from the command line,
for deploy scripts, workers and load tests that cannot sign in to create one."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from datamodel import Rejected, Scope, ValidationError, ids
from datastore import DatastoreError
from nimbus import conf
from nimbus.keys import expires_in, issue_api_key
from nimbus.models import User
from nimbus.models.user import normalize_email

PERMISSIONS = ("read", "write", "admin")


class Command(BaseCommand):
    help = (
        "Create an API key for the user with this email and print its secret (shown only here). "
        "With --create-user, the user is created first if missing."
    )
    stealth_options = ("stdin",)  # call_command(..., stdin=...) in tests

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email", help="The key owner's email.")
        parser.add_argument("--name", default="command line", help="A name to recognise the key.")
        parser.add_argument(
            "--permission",
            action="append",
            dest="permissions",
            choices=PERMISSIONS,
            help="read, write or admin (repeatable; default read and write).",
        )
        parser.add_argument(
            "--rate-limit", type=int, help="Requests per minute for this key (default 1000)."
        )
        parser.add_argument(
            "--expires-in-days",
            type=int,
            help="The key expires this many days from now (default: never).",
        )
        parser.add_argument(
            "--create-user", action="store_true", help="Create the user if no user has this email."
        )
        parser.add_argument(
            "--password-stdin",
            action="store_true",
            help="With --create-user: the new user's password, read from the first line of stdin "
            "and checked by Django's password validators (without it the user has no password "
            "and cannot sign in).",
        )
        parser.add_argument(
            "--json", action="store_true", help="Print the key and its secret as one JSON object."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        email = normalize_email(options["email"])
        permissions = options["permissions"] or ["read", "write"]
        rate_limit = options["rate_limit"]
        if rate_limit is not None and rate_limit < 1:
            raise CommandError("--rate-limit must be a positive number of requests per minute")
        if options["password_stdin"] and not options["create_user"]:
            raise CommandError("--password-stdin sets the password of a user --create-user creates")
        days = options["expires_in_days"]
        if days is not None and days < 1:
            raise CommandError("--expires-in-days must be a positive number of days")
        connection = conf.get_connection()
        try:
            users = User.objects.system(using=connection)
            if options["create_user"]:  # race-safe: the email is unique
                defaults = {"user_id": ids.user_id, "profile": {"name": email.split("@")[0]}}
                if options["password_stdin"]:
                    new = User(email=email)  # the email is validated here, the password below
                    new.set_password(_first_line(options.get("stdin") or sys.stdin))
                    defaults["password_hash"] = new.get("password_hash")
                user, created = users.get_or_create(email=email, defaults=defaults)
                if options["password_stdin"] and not created:
                    raise CommandError(
                        f"{email} already has an account: --password-stdin only sets a new "
                        f"user's password (change theirs with: manage.py changepassword {email})"
                    )
            else:
                user = users.filter(email=email).with_data().first()
                if user is None:
                    raise CommandError(f"no user has the email {email!r} (use --create-user)")
            if "admin" in permissions and not user.get("is_admin"):
                raise CommandError(f"{email} is not an administrator: no admin keys for them")
            key, secret = issue_api_key(
                Scope(connection, user.pk),
                name=options["name"],
                owner_email=email,
                owner_is_admin=bool(user.get("is_admin")),
                permissions=permissions,
                rate_limit=rate_limit,
                expires_at=None if days is None else expires_in(days),
            )
        except ValidationError as exc:
            raise CommandError(f"refused: {exc}") from exc
        except (DatastoreError, Rejected) as exc:
            raise CommandError(f"could not create the key: {exc}") from exc
        if options["json"]:
            report = {"key": secret, "key_id": key.pk, "user_id": user.pk, "email": email}
            extra = {"permissions": key.get("permissions"), "expires_at": key.get("expires_at")}
            self.stdout.write(json.dumps({**report, **extra}))
        else:
            self.stdout.write(secret)


def _first_line(stream: Any) -> str:
    """The password a script pipes in: the first line, without its line ending."""
    return str(stream.readline()).rstrip("\r\n")
