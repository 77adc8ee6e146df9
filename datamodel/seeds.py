"""Seed data, run by initialize through the normal save path (KV + metadata).

::

    class Meta:
        seeds = [
            Seed("if_missing", {"email": "${ADMIN_EMAIL}", "is_admin": True}, key=["email"]),
        ]

Conditions: ``always`` (create, or update the object with the same ``key``), ``if_empty`` (only
when the model has no objects at all), ``if_missing`` (only when no object has the same
``key`` values). ``always`` and ``if_missing`` need ``key``, so every condition is idempotent:
a second run adds nothing. ``${VAR}`` in strings is replaced from the environment; a missing
variable is an error naming it. ``data`` may also be a callable ``data(env) -> dict`` for
values that need computing (a password hash, say).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .scope import Scope

__all__ = ["CONDITIONS", "Seed", "SeedError", "run_seed", "substitute"]

CONDITIONS = ("always", "if_empty", "if_missing")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class SeedError(ValueError):
    """A seed cannot run (bad declaration or a missing environment variable)."""


@dataclass(frozen=True)
class Seed:
    condition: str
    data: Mapping[str, Any] | Callable[[Mapping[str, str]], Mapping[str, Any]]
    key: Sequence[str] = field(default_factory=tuple)
    owner: str | None = None  # the user the object belongs to, for models that track users
    when_env: str | None = None  # run only when this environment variable is set

    def __post_init__(self) -> None:
        if self.condition not in CONDITIONS:
            raise SeedError(f"seed condition {self.condition!r} is not one of {CONDITIONS}")
        if self.condition in ("always", "if_missing") and not self.key:
            # Without a key a later run cannot find the object again: it would add another.
            raise SeedError(f"an {self.condition!r} seed needs key=[...] (its natural key fields)")


def substitute(value: Any, env: Mapping[str, str], where: str = "seed") -> Any:
    """Replace ``${VAR}`` in every string of ``value``."""
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise SeedError(f"{where}: environment variable {name} is not set")
            return env[name]

        return _VARIABLE.sub(replace, value)
    if isinstance(value, Mapping):
        return {key: substitute(item, env, where) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, env, where) for item in value]
    return value


def run_seed(
    model: Any, seed: Seed, scope: Scope, env: Mapping[str, str], *, was_empty: bool
) -> int:
    """Run one seed as ``scope`` (normally system); returns how many objects it wrote.

    ``was_empty`` says whether the model had no objects before this round of seeds began, so
    several ``if_empty`` seeds of one model all run on a fresh install.
    """
    where = f"{model._meta.name} seed ({seed.condition})"
    if seed.when_env is not None and not env.get(seed.when_env):
        return 0
    data = seed.data(env) if callable(seed.data) else seed.data
    data = substitute(dict(data), env, where)
    if seed.owner is not None and model._meta.user_tracking:
        data.setdefault("user_id", substitute(seed.owner, env, where))
    for name in seed.key:
        if name not in data:
            raise SeedError(f"{where}: key field {name!r} is missing from the data")
    objects = model.objects.bind(scope)
    if seed.condition == "if_empty" and not was_empty:
        return 0
    existing = None
    if seed.key:
        matches = objects.query().include_deleted()
        for name in seed.key:
            matches = matches.where(name, data[name])
        row = matches.first()
        if row is not None:
            existing = objects.get(
                **{name: row[name] for name in model._meta.key_fields}, include_deleted=True
            )
    if existing is None:
        objects.create(**data)
        return 1
    if seed.condition == "always":
        existing.set(data)
        if existing.changes():
            existing.save()
            return 1
    return 0
