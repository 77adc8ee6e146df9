"""Email -> user lookup (``email:{email}`` in NIMBUS_EMAILS), for sign-in by email."""

from __future__ import annotations

from datamodel import DataModel, fields


class EmailLookup(DataModel):
    email = fields.String(primary_key=True, max_length=254)

    class Meta:
        name = "EMAIL"
        namespace = "NIMBUS_EMAILS"
        key_pattern = "email:{email}"
        table = "email_meta"
