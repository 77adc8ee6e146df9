"""Check the ``email:{email}`` lookups against the users, and repair them: what
``manage.py nimbus_sync`` runs after the metadata rows are rebuilt from KV (the users are read
from their rows)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from datamodel import Connection

from .models import EmailLookup, User

__all__ = ["LookupReport", "verify_lookups"]

SAMPLE = 20


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
