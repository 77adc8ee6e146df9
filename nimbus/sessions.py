"""A Django session engine on the KV session cache: ``SESSION_ENGINE = "nimbus.sessions"``.

Sessions live under ``session:{key}`` in NIMBUS_SESSIONS and expire with the session. If the
store is unavailable a session reads as empty (the user is signed out) instead of failing.
"""

from __future__ import annotations

from typing import Any

from django.contrib.sessions.backends.base import CreateError, SessionBase

from datastore import Conflict, SessionCacheClient

from . import conf

__all__ = ["SessionStore"]


class SessionStore(SessionBase):
    @property
    def _sessions(self) -> SessionCacheClient:
        return SessionCacheClient(conf.kv_store())

    def load(self) -> dict[str, Any]:
        stored = self._sessions.get(self.session_key) if self.session_key else None
        if stored is None or "data" not in stored:
            self._session_key = None
            return {}
        return self.decode(stored["data"])

    def exists(self, session_key: str | None) -> bool:
        return bool(session_key) and self._sessions.exists(session_key)  # type: ignore[arg-type]

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
        if self.session_key is None:
            return self.create()
        if must_create and not self._sessions.kv.supports_cas and self.exists(self.session_key):
            raise CreateError
        data = {"data": self.encode(self._get_session(no_load=must_create))}
        try:
            self._sessions.set(
                self.session_key, data, ttl=self.get_expiry_age(), create=must_create
            )
        except Conflict as exc:
            raise CreateError from exc
        return None

    def delete(self, session_key: str | None = None) -> None:
        session_key = session_key or self.session_key
        if session_key:
            self._sessions.delete(session_key)

    @classmethod
    def clear_expired(cls) -> None:
        """Nothing to do: the store expires sessions by TTL."""
