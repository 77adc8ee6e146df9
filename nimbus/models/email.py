"""Email -> user lookup (``email:{email}`` in NIMBUS_EMAILS: ``{user_id, created}``), for
sign-in by email and for Workers that find a user without SQL.

Kept by ``User``'s save path (its hooks): a user's create writes the lookup of their email, an
email change moves it, a hard delete removes it (a soft-deleted user keeps their email, as the
unique constraint does). ``nimbus_sync`` checks the lookups against the users' rows and
repairs them (``nimbus.lookups.verify_lookups``).
"""

from __future__ import annotations

from datamodel import DataModel, fields

__all__ = ["EmailLookup", "follow_user"]


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


def follow_user(user: DataModel, *, gone: bool = False) -> None:
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
