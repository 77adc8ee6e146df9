"""API keys (``apikey:{sha256}`` in NIMBUS_KEYS).

The key itself (``sk_live_<hex32>``) is shown once, at creation; only its SHA-256 is stored, as
the key id. Authenticating reads the key, then its owner (``user:{user_id}``): the owner's
current status and admin flag decide, so ``user_email`` here is only what the owner's email was
when the key was made. ``nimbus.keys`` issues keys (``slot``: one of the owner's capped slots).
"""

from __future__ import annotations

import hashlib

from datamodel import DataModel, Listing, fields


def key_hash(api_key: str) -> str:
    """The stored id of an API key: its SHA-256 in hex."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


class ApiKey(DataModel):
    key_hash = fields.String(primary_key=True, max_length=64)
    name = fields.String(required=True, max_length=100)
    prefix = fields.String(max_length=16)  # "sk_live_ab12", to recognise a key in lists
    active = fields.Boolean(default=True)
    permissions = fields.Array(of=fields.Choice(["read", "write", "admin"]), default_factory=list)
    rate_limit = fields.Integer(default=1000)  # requests per minute
    expires_at = fields.Timestamp()  # none: the key does not expire
    last_used = fields.Timestamp()
    created = fields.Timestamp(auto_now_add=True)  # the spec's name for the creation time
    user_email = fields.String()  # the owner's email when the key was made (display only)
    # "{user_id}:{n}", n below NIMBUS_MAX_KEYS_PER_USER: its reservation, claimed with the key
    # and released by a revoke, keeps the cap on keys per user exact (``nimbus.keys``)
    slot = fields.String(max_length=300, unique=True, release_on_delete=True)
    usage = fields.JSON(default_factory=lambda: {"requests_today": 0, "requests_total": 0})

    class Meta:
        name = "APIKEY"
        namespace = "NIMBUS_KEYS"
        key_pattern = "apikey:{key_hash}"
        table = "apikey_meta"
        sync_fields = ["name", "prefix", "active", "expires_at", "last_used"]
        # apikeys:{user_id} in NIMBUS_USERS: "sha256:{hash}" of each of the owner's keys
        listings = [
            Listing("apikeys", pointer="user_id", item="sha256:{key_hash}", stored_with="USER")
        ]
