"""A Django session engine on the KV session cache: ``SESSION_ENGINE = "nimbus.sessions"``.

Each session is the data-structures spec's SessionData under ``session:{key}`` in
NIMBUS_SESSIONS, readable without Django, plus Django's signed session payload in ``data``::

    {"user_id": "user_a1b2c3d4e5f6", "email": "admin@example.com",
     "created": "2026-11-29T13:45:00.000Z", "expires": "2026-12-13T13:45:00.000Z",
     "ip": "203.0.113.7", "user_agent": "Mozilla/5.0 ...", "data": "<signed payload>"}

``user_id`` is the signed-in Nimbus user's ``user_id`` (``nimbus.accounts``) and ``email``
theirs; both are null for an anonymous session. ``created`` is when the
key was first stored and ``expires`` the session's expiry, both on the store's clock. ``ip`` and
``user_agent`` come from the request that saved the session (``SessionClientMiddleware``; the
address is the client's, see ``nimbus.addresses``); a
session first saved outside a request has null for them, and one saved again outside a request
keeps the last request's.

Sessions stored as ``{"data": ...}`` alone (before this shape) still load. A value that cannot
be read is no session, as is a session while the store is unavailable (the user is signed out
instead of the request failing), and so is a cookie that cannot be a session key.

A save is a compare-and-set on the key's version: a session deleted meanwhile (signed out in
another request) is not written back, the save raises ``UpdateError``. Cloudflare KV has no
compare-and-set: there the check is a read before the write, best effort. A session whose expiry
has passed when it is saved is deleted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError
from django.http import HttpRequest, HttpResponse

from datastore import Conflict, InvalidKey, SessionCacheClient, codec
from datastore.keys import validate_identifier

from . import conf
from .accounts.users import email_of
from .addresses import client_address

__all__ = ["SessionClient", "SessionClientMiddleware", "SessionStore"]

USER_AGENT_MAX_LENGTH = 512  # a client can send kilobytes; a browser's is a few hundred bytes


@dataclass(frozen=True)
class SessionClient:
    """Who a session's request came from: its address and User-Agent (each may be unknown)."""

    ip: str | None
    user_agent: str | None

    @classmethod
    def of(cls, request: HttpRequest) -> SessionClient:
        user_agent = request.META.get("HTTP_USER_AGENT") or None
        return cls(
            ip=client_address(request),
            user_agent=user_agent[:USER_AGENT_MAX_LENGTH] if user_agent else None,
        )


class SessionClientMiddleware:
    """Tells the request's session who the client is, so a save stores ``ip`` and
    ``user_agent``. Goes right after ``SessionMiddleware``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = getattr(request, "session", None)
        if isinstance(session, SessionStore):
            session.client = SessionClient.of(request)
        return self.get_response(request)


class SessionStore(SessionBase):
    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        self.client: SessionClient | None = None  # set by SessionClientMiddleware
        # The stored record of this key, without its payload (None: nothing stored yet).
        self._record: tuple[str, dict[str, Any]] | None = None
        # The key's version as this object last read or wrote it (compare-and-set on save).
        self._version: tuple[str, int] | None = None

    @property
    def _sessions(self) -> SessionCacheClient:
        return SessionCacheClient(conf.kv_store())

    def _validate_session_key(self, key: str | None) -> bool:
        """Django's rule (8 characters or more) and the store's for a session token, so a
        malformed cookie is no session rather than an error."""
        return bool(super()._validate_session_key(key)) and _is_token(key)

    def load(self) -> dict[str, Any]:
        key = self.session_key
        found = self._sessions.get_versioned(key) if key else None
        if key is None or found is None or "data" not in found[0]:
            self._session_key = None
            return {}
        stored, version = found
        self._record = (key, {name: value for name, value in stored.items() if name != "data"})
        self._version = (key, version)
        return self.decode(stored["data"])

    def exists(self, session_key: str | None) -> bool:
        if session_key is None or not _is_token(session_key):
            return False
        return self._sessions.exists(session_key)

    def create(self) -> None:
        while True:
            self._session_key = self._get_new_session_key()
            try:
                self.save(must_create=True)
            except CreateError:
                continue  # the new key was taken: pick another
            self.modified = True
            return

    def save(self, must_create: bool = False) -> None:
        """Store the session. Without ``must_create`` the key must still be stored:
        ``UpdateError`` if it was deleted meanwhile (signed out in another request), so a
        deleted session is never written back. A session whose expiry has passed is
        deleted instead of stored."""
        key = self.session_key
        if key is None:
            return self.create()
        sessions = self._sessions
        if must_create and not sessions.kv.supports_cas and self.exists(key):
            raise CreateError
        session = self._get_session(no_load=must_create)
        age = self.get_expiry_age()
        if age <= 0:
            if not must_create:
                self.delete(key)
            return None
        record = self._new_record(session, sessions.kv.clock(), age)
        value = {**record, "data": self.encode(session)}
        if must_create:
            try:
                version = sessions.set(key, value, ttl=age, create=True)
            except Conflict as exc:
                raise CreateError from exc
        else:
            version = self._update(sessions, key, value, age)
        self._record = (key, record)
        self._version = (key, version)
        return None

    def _update(
        self, sessions: SessionCacheClient, key: str, value: dict[str, Any], age: int
    ) -> int:
        """Write ``value`` over the stored session, only while it is stored; its new version.

        A compare-and-set on the version this object last saw: a conflict means another request
        saved the session (written over, as Django's engines do: the last save wins) or deleted
        it (``UpdateError``). Without compare-and-set (Cloudflare KV) the check is a read before
        the write, and a delete between the two is lost."""
        if not sessions.kv.supports_cas:
            if sessions.get(key) is None:
                raise UpdateError
            return sessions.set(key, value, ttl=age)
        expected = self._version[1] if self._version and self._version[0] == key else None
        while True:
            if expected is None:
                found = sessions.get_versioned(key)
                if found is None:
                    raise UpdateError
                expected = found[1]
            try:
                return sessions.set(key, value, ttl=age, if_version=expected)
            except Conflict:
                expected = None  # saved or deleted meanwhile: look again

    def _new_record(self, session: dict[str, Any], now: float, age: int) -> dict[str, Any]:
        """The SessionData fields for saving ``session`` at ``now`` (epoch seconds) to expire
        ``age`` seconds later."""
        previous = self._record[1] if self._record and self._record[0] == self.session_key else {}
        moment = dt.datetime.fromtimestamp(now, dt.UTC)
        created = previous.get("created")
        if not isinstance(created, str):
            created = codec.isoformat(moment)
        expires = codec.isoformat(moment + dt.timedelta(seconds=age))
        client = self.client or SessionClient(previous.get("ip"), previous.get("user_agent"))
        user_id, email = _user_of(session)
        return {
            "user_id": user_id,
            "email": email,
            "created": created,
            "expires": expires,
            "ip": client.ip,
            "user_agent": client.user_agent,
        }

    def delete(self, session_key: str | None = None) -> None:
        session_key = session_key or self.session_key
        if session_key and _is_token(session_key):
            self._sessions.delete(session_key)

    @classmethod
    def clear_expired(cls) -> None:
        """Nothing to do: the store expires sessions by TTL."""


def _is_token(key: str | None) -> bool:
    """Whether ``key`` can name a session in the store (letters, digits, ``. _ ~ @ + = - :``,
    at most 256 characters)."""
    try:
        validate_identifier(key, what="session key")  # type: ignore[arg-type]
    except InvalidKey:
        return False
    return True


def _user_of(session: dict[str, Any]) -> tuple[str | None, str | None]:
    """The signed-in user's ``user_id`` and email (``None, None`` if anonymous)."""
    user_id = session.get(SESSION_KEY)
    if user_id is None:
        return None, None
    return str(user_id), email_of(str(user_id))
