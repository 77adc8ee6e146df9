"""Id generators for the Nimbus domain."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid

__all__ = ["api_key", "batch_id", "page_id", "project_id", "user_id", "uuid4"]


def uuid4() -> str:
    """A random UUID (the spec's default primary key)."""
    return str(uuid.uuid4())


def user_id() -> str:
    """``user_`` and 12 random hex digits."""
    return f"user_{secrets.token_hex(6)}"


def project_id() -> str:
    """``proj_`` and 12 random hex digits."""
    return f"proj_{secrets.token_hex(6)}"


def page_id(project_id: str, source_path: str) -> str:
    """Deterministic: ``page_`` + md5(project_id + source_path)[:12], so re-uploads match."""
    digest = hashlib.md5((project_id + source_path).encode("utf-8"), usedforsecurity=False)
    return f"page_{digest.hexdigest()[:12]}"


def batch_id(moment: dt.datetime | None = None) -> str:
    """``batch_YYYYMMDD_HHMMSS`` in UTC."""
    moment = moment or dt.datetime.now(dt.UTC)
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return moment.strftime("batch_%Y%m%d_%H%M%S")


def api_key() -> str:
    """``sk_live_`` and 32 random hex digits (128 bits)."""
    return f"sk_live_{secrets.token_hex(16)}"
