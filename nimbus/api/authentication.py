"""API-key authentication (``Authorization: Bearer sk_live_...``) and who is acting.

Authenticating a request with a key reads the key (``apikey:{hash}``, its SHA-256 is its id)
and its owner (``user:{user_id}``), and counts the request against the key's rate limit
(``rl:api:key_{hash}``): three calls gathered into one request where the store combines them
(the gateway: one round trip), else one after the other. The owner's current status and admin
flag decide on every request: a revoked or expired key, or a deleted owner, is 401; a suspended
owner is 403; the key's ``admin`` permission counts only while its owner is an administrator,
and an administrator's key has admin powers only with that permission. The key's usage
counters are only recorded here, in memory, and written in batches after responses
(``nimbus.key_usage``). A Nimbus user signed in with a session (``nimbus.accounts``) acts as
themselves, with their own ``user_id`` and admin flag, so the browsable API shows them what
their API key would."""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from datamodel import clock
from datastore import RateLimiterClient, StartedCheck

from .. import conf, key_usage
from ..accounts.models import Account
from ..models import ApiKey, User, key_hash

__all__ = ["ApiKeyAuthentication", "NimbusUser", "acting_user", "key_identifier"]

_KEY_FORMAT = re.compile(r"sk_live_[0-9a-f]{32}")


@dataclass
class NimbusUser:
    """The user behind a request: an API key's owner or a signed-in user.

    ``is_admin`` is the account's flag; ``permissions`` are the key's as they count now
    (``admin`` only while the owner is an administrator)."""

    user_id: str
    email: str | None = None
    is_admin: bool = False
    permissions: list[str] = field(default_factory=list)
    rate_limit: int | None = None
    key_id: str | None = None  # the API key's hash, when authenticated by key
    expires_at: str | None = None  # the API key's expiry, if it has one
    # the request counted against the key's limit while the key was read (``ApiKeyRateThrottle``)
    throttle: StartedCheck | None = field(default=None, repr=False, compare=False)

    is_authenticated = True
    is_anonymous = False

    @property
    def has_admin_powers(self) -> bool:
        """An administrator, and by key only with a key that has the ``admin`` permission."""
        return self.is_admin and (self.key_id is None or "admin" in self.permissions)

    @property
    def is_staff(self) -> bool:
        return self.has_admin_powers

    @property
    def pk(self) -> str:
        return self.user_id

    def can(self, permission: str) -> bool:
        return self.key_id is None or permission in self.permissions or "admin" in self.permissions


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[NimbusUser, dict[str, Any]] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "Invalid Authorization header: expected 'Bearer sk_live_<32 hex digits>'."
            )
        token = header[1].decode("latin-1")
        if not _KEY_FORMAT.fullmatch(token):
            raise exceptions.AuthenticationFailed("Invalid API key.")
        digest = key_hash(token)
        stored, owner, throttle = _read_key(digest)
        # Look-up by hash is exact; the comparison is constant-time all the same.
        if stored is None or not hmac.compare_digest(str(stored.pk), digest):
            raise exceptions.AuthenticationFailed("Invalid API key.")
        if not stored.get("active") or stored.get("deleted_at"):
            raise exceptions.AuthenticationFailed("This API key has been revoked.")
        expires_at = stored.get("expires_at")
        if expires_at is not None and expires_at <= clock.now_iso():
            raise exceptions.AuthenticationFailed("This API key has expired.")
        owner = _owner(owner if owner is not None and owner.pk == stored.get("user_id") else None)
        is_admin = bool(owner.get("is_admin"))
        permissions = list(stored.get("permissions") or [])
        user = NimbusUser(
            user_id=owner.pk,
            email=owner.get("email"),
            is_admin=is_admin,
            permissions=[name for name in permissions if name != "admin" or is_admin],
            rate_limit=stored.get("rate_limit"),
            key_id=digest,
            expires_at=expires_at,
            throttle=throttle,
        )
        key_usage.record(digest)  # in memory: the write waits for a flush after the response
        return user, stored.get_data()

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


API_WINDOW = 60  # seconds: NIMBUS_RATE_LIMITS are per minute
API_KEY_PREFIX = "rl:api:"


def key_identifier(key_id: str) -> str:
    """The rate limiter's identifier for an API key (``rl:api:key_{hash}``)."""
    return f"key_{key_id}"


def _read_key(digest: str) -> tuple[ApiKey | None, User | None, StartedCheck | None]:
    """The key, its owner and the request counted against the key's limit: gathered into one
    request where the store combines them. The owner is read through the key's ``user_id``
    whatever the key's state; the caller decides."""
    keys = ApiKey.objects.system()
    kv = conf.kv_store()
    combined = kv.combine()
    reads = keys.scope.store(ApiKey._meta).combine(combined)
    key_read = reads.read(ApiKey._meta.kv_class, digest)
    owner_read = reads.read_referenced(key_read, "user_id", User._meta.kv_class)
    limiter = RateLimiterClient(
        kv, fail_open=bool(getattr(settings, "NIMBUS_API_THROTTLE_FAIL_OPEN", True))
    )
    throttle = limiter.start_check(
        combined, key_identifier(digest), API_WINDOW, key_prefix=API_KEY_PREFIX
    )
    reads.send()
    found = key_read.result()
    if found is None:
        return None, None, None
    key = ApiKey._from_stored(found.data, found.version, keys.scope)
    owner_found = owner_read.result()
    owner = (
        User._from_stored(owner_found.data, owner_found.version, keys.scope)
        if owner_found is not None
        else None
    )
    return key, owner, throttle


def _owner(owner: User | None) -> User:
    """The key's owner as stored now, if they may use it."""
    if owner is None or owner.get("deleted_at"):
        raise exceptions.AuthenticationFailed(
            "The account that owns this API key no longer exists."
        )
    if owner.get("status") != "active":
        raise exceptions.PermissionDenied(
            f"The account that owns this API key is {owner.get('status') or 'not active'}."
        )
    return owner


def acting_user(request: Request) -> NimbusUser:
    """The Nimbus user of an authenticated request: an API key's owner, or the Nimbus user
    signed in with a session. Any other kind of user is not one (``NotAuthenticated``)."""
    user = request.user
    if isinstance(user, NimbusUser):
        return user
    if isinstance(user, Account) and user.is_active:
        return NimbusUser(user_id=user.pk, email=user.email, is_admin=user.is_admin)
    raise exceptions.NotAuthenticated()
