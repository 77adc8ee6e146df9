"""Issuing API keys: which keys a user may have, how many, and for how long.

``issue_api_key`` is the one way keys are made (``POST /api/keys/`` and ``manage.py
nimbus_create_key``), so both obey the same rules:

* admin keys only for administrators;
* a key that creates a key (``within``) passes on no more than it has: its permissions (an
  ``admin`` key may give any), its rate limit (also the default) and its expiry (also the
  default);
* at most ``settings.NIMBUS_MAX_KEYS_PER_USER`` live keys per user (default 20): revoked keys
  do not count, expired ones count until revoked. Past the cap, ``Rejected``.

The cap is exact, also when keys are created at once: each key holds one of its owner's slots
(``slot`` = ``{user_id}:{n}``, ``n`` below the cap), a unique field released by a revoke, so the
slot's reservation is claimed create-only in the same atomic KV write as the key. A create
counts its owner's live keys (their metadata rows) and takes the first free slot; two creates
racing for one slot both write, one is refused and takes the next free slot, and when none is
left below the cap the create is refused. Keys made before slots existed hold none: they
count in the cap, but a create racing with them is bounded only by the slots.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from datamodel import IntegrityError, Rejected, Scope, ValidationError, clock, ids
from datastore import codec

from .models import ApiKey, key_hash

__all__ = [
    "DEFAULT_MAX_KEYS_PER_USER",
    "PERMISSIONS",
    "KeyBounds",
    "expires_in",
    "issue_api_key",
    "max_keys_per_user",
]

DEFAULT_MAX_KEYS_PER_USER = 20
PERMISSIONS = ("read", "write", "admin")
DEFAULT_PERMISSIONS = ("read", "write")


@dataclass(frozen=True)
class KeyBounds:
    """What the key creating a key has, and so may pass on: its permissions (as they count
    now: ``admin`` only while its owner is an administrator), its rate limit, its expiry."""

    permissions: frozenset[str]
    rate_limit: int
    expires_at: str | None = None

    def grantable(self) -> set[str]:
        return set(PERMISSIONS) if "admin" in self.permissions else set(self.permissions)


def max_keys_per_user() -> int:
    """``settings.NIMBUS_MAX_KEYS_PER_USER``: a positive number of live keys per user."""
    value = getattr(settings, "NIMBUS_MAX_KEYS_PER_USER", DEFAULT_MAX_KEYS_PER_USER)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ImproperlyConfigured(
            f"NIMBUS_MAX_KEYS_PER_USER must be a positive whole number of keys, got {value!r}"
        )
    return value


def expires_in(days: int) -> str:
    """The moment ``days`` days from now, as a stored timestamp."""
    start = dt.datetime.fromisoformat(clock.now_iso().replace("Z", "+00:00"))
    return codec.isoformat(start + dt.timedelta(days=days))


def issue_api_key(
    scope: Scope,
    *,
    name: str,
    owner_email: str | None,
    owner_is_admin: bool,
    permissions: list[str] | None = None,
    rate_limit: int | None = None,
    expires_at: str | dt.datetime | None = None,
    within: KeyBounds | None = None,
) -> tuple[ApiKey, str]:
    """Create an API key owned by ``scope``'s user; returns the key and its secret
    (``sk_live_<hex32>``), which is not stored and cannot be shown again.

    ``permissions`` default to read and write (within ``within``'s), ``rate_limit`` and
    ``expires_at`` to ``within``'s (none: the model's default, no expiry). Raises
    ``ValidationError`` naming the field out of bounds, ``Rejected`` past the cap."""
    if scope.user_id is None:
        raise ValueError("an API key needs an owner: issue it in a user's scope")
    values: dict[str, Any] = {
        "name": name,
        "permissions": _permissions(permissions, owner_is_admin, within),
        "expires_at": _expiry(expires_at, within),
        "user_email": owner_email,
    }
    limit = _rate_limit(rate_limit, within)
    if limit is not None:
        values["rate_limit"] = limit
    cap = max_keys_per_user()
    keys = ApiKey.objects.bind(scope)
    held = list(keys.query().values_list("slot", flat=True))
    if len(held) >= cap:
        raise Rejected(_over_cap(cap))
    taken = {slot.rpartition(":")[2] for slot in held if slot}
    for n in range(cap):
        if str(n) in taken:
            continue
        secret = ids.api_key()
        try:
            key = keys.create(
                key_hash=key_hash(secret),
                prefix=secret[:12],
                slot=f"{scope.user_id}:{n}",
                **values,
            )
        except IntegrityError as exc:
            if exc.fields != ("slot",):
                raise
            continue  # taken by a key the rows do not show yet (made meanwhile): the next
        return key, secret
    raise Rejected(_over_cap(cap))


def _over_cap(cap: int) -> str:
    return (
        f"This user has {cap} API keys, the most allowed (NIMBUS_MAX_KEYS_PER_USER): revoke "
        "one (DELETE /api/keys/{id}/) to create another; expired keys count until revoked."
    )


def _permissions(
    requested: list[str] | None, owner_is_admin: bool, within: KeyBounds | None
) -> list[str]:
    grantable = set(PERMISSIONS) if within is None else within.grantable()
    if requested is None:
        chosen = [name for name in DEFAULT_PERMISSIONS if name in grantable]
    else:
        chosen = sorted(set(requested))
    if "admin" in chosen and not owner_is_admin:
        raise ValidationError({"permissions": ["Only administrators may create admin keys."]})
    beyond = [name for name in chosen if name not in grantable]
    if within is not None and beyond:
        have = ", ".join(sorted(within.permissions)) or "none"
        raise ValidationError(
            {
                "permissions": [
                    f"This API key has the permissions {have}: a key it creates cannot have "
                    f"{', '.join(beyond)}."
                ]
            }
        )
    return chosen


def _rate_limit(requested: int | None, within: KeyBounds | None) -> int | None:
    if requested is not None and requested < 1:
        raise ValidationError({"rate_limit": ["Must be at least 1 request per minute."]})
    if within is None:
        return requested
    if requested is None:
        return within.rate_limit
    if requested > within.rate_limit:
        raise ValidationError(
            {
                "rate_limit": [
                    f"At most {within.rate_limit} requests per minute: a key cannot create a "
                    "key with a higher rate limit than its own."
                ]
            }
        )
    return requested


def _expiry(requested: str | dt.datetime | None, within: KeyBounds | None) -> str | None:
    expires_at = _timestamp(requested)
    if expires_at is not None and expires_at <= clock.now_iso():
        raise ValidationError({"expires_at": ["Must be in the future."]})
    if within is None or within.expires_at is None:
        return expires_at
    if expires_at is None:
        return within.expires_at
    if expires_at > within.expires_at:
        raise ValidationError(
            {
                "expires_at": [
                    f"No later than {within.expires_at}: a key cannot create a key that "
                    "expires after it does."
                ]
            }
        )
    return expires_at


def _timestamp(value: str | dt.datetime | None) -> str | None:
    """The stored form, which sorts as text: compared with ``clock.now_iso()`` as it is."""
    if value is None:
        return None
    try:
        cleaned: str = ApiKey._meta.fields["expires_at"].clean(value)
    except ValueError as exc:
        raise ValidationError({"expires_at": [str(exc)]}) from None
    return cleaned
