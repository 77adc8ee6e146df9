"""Email -> user lookup (``email:{email}`` in NIMBUS_EMAILS: ``{user_id, created}``), for
sign-in by email and for Workers that find a user without SQL.

Kept by ``User``'s save path (its hooks): a user's create writes the lookup of their email, an
email change moves it, a hard delete removes it (a soft-deleted user keeps their email, as the
unique constraint does). ``nimbus_sync`` checks the lookups against the users' rows and
repairs them (``verify_lookups``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from datamodel import DataModel, fields

if TYPE_CHECKING:
    from datamodel import Connection

    from .user import User

__all__ = ["EmailLookup", "LookupReport", "follow_user", "verify_lookups"]

SAMPLE = 20


class EmailLookup(DataModel):
    email = fields.String(primary_key=True, max_length=254)
    user_id = fields.String(required=True)
    created = fields.Timestamp()  # the account's creation

    class Meta:
        name = "EMAIL"
        namespace = "NIMBUS_EMAILS"
        key_pattern = "email:{email}"
        table = "email_meta"
        sync_fields = ["user_id"]
        user_tracking = False  # the user it names is a field; only the system reads lookups
        auth = False
        soft_delete = False  # a released email has no lookup


def follow_user(user: User, *, gone: bool = False) -> None:
    """Make the lookups agree with ``user``: theirs under their email (none when ``gone``:
    hard-deleted), none under any other email."""
    scope = user.scope
    if scope is None:
        return
    lookups = EmailLookup.objects.system(using=scope.connection)
    email, user_id = user.get("email"), user.pk
    lookups.filter(user_id=user_id).exclude(email=email).delete()
    if gone:
        lookups.filter(email=email, user_id=user_id).delete()
        return
    lookups.update_or_create(
        email=email, defaults={"user_id": user_id, "created": user.get("created_at")}
    )


@dataclass
class LookupReport:
    """What ``verify_lookups`` found: users without their lookup, lookups naming no user."""

    checked: int = 0
    missing: int = 0
    stale: int = 0
    repaired: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def drift(self) -> int:
        return self.missing + self.stale

    def to_json(self) -> dict[str, Any]:
        return {
            "model": "EMAIL",
            "checked": self.checked,
            "missing": self.missing,
            "stale": self.stale,
            "repaired": self.repaired,
            "examples": self.examples,
        }


def verify_lookups(connection: Connection, *, repair: bool = False) -> LookupReport:
    """Compare every user's email with the lookups (from the metadata rows, after ``verify``
    has rebuilt them from KV); with ``repair``, write the missing ones and remove the stale."""
    from .user import User

    report = LookupReport()
    users = User.objects.system(using=connection)
    lookups = EmailLookup.objects.system(using=connection)
    wanted = {
        row["email"]: row
        for row in users.all().include_deleted().values("user_id", "email", "created_at")
    }
    found = {row["email"]: row["user_id"] for row in lookups.values("email", "user_id")}
    report.checked = len(wanted) + len(set(found) - set(wanted))
    for email, row in wanted.items():
        if found.get(email) == row["user_id"]:
            continue
        report.missing += 1
        _note(report, f"missing: email:{email}")
        if repair:
            lookups.update_or_create(
                email=email, defaults={"user_id": row["user_id"], "created": row["created_at"]}
            )
            report.repaired += 1
    for email in set(found) - set(wanted):
        report.stale += 1
        _note(report, f"stale: email:{email}")
        if repair:
            lookups.filter(email=email).delete()
            report.repaired += 1
    return report


def _note(report: LookupReport, example: str) -> None:
    if len(report.examples) < SAMPLE:
        report.examples.append(example)
