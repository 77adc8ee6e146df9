"""Lifecycle hooks.

``before_create(instance)`` may modify the instance; ``before_update(instance, changes)`` and
``before_delete(instance)`` may refuse by raising (``Rejected`` is the clear way); nothing is
written then. ``after_create(instance)``, ``after_update(instance, changes)``,
``after_delete(instance)`` and ``after_restore(instance)`` run after both stores are written;
their errors are logged and swallowed, never raised.

Hooks come from methods of the same name on the model class and from ``Model.hooks.connect``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

__all__ = ["AFTER", "BEFORE", "HookRegistry"]

BEFORE = ("before_create", "before_update", "before_delete", "before_restore")
AFTER = ("after_create", "after_update", "after_delete", "after_restore")
EVENTS = BEFORE + AFTER

logger = logging.getLogger("datamodel.hooks")


class HookRegistry:
    """The hooks of one model."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self._handlers: dict[str, list[Callable[..., Any]]] = {event: [] for event in EVENTS}

    def connect(self, event: str, handler: Callable[..., Any] | None = None) -> Any:
        """Add ``handler`` for ``event``; usable as a decorator: ``@Model.hooks.connect(...)``."""
        if event not in self._handlers:
            raise ValueError(f"unknown hook {event!r}: use one of {', '.join(EVENTS)}")
        if handler is None:
            return lambda function: self.connect(event, function)
        self._handlers[event].append(handler)
        return handler

    def disconnect(self, event: str, handler: Callable[..., Any]) -> None:
        self._handlers[event].remove(handler)

    def handlers(self, event: str) -> list[Callable[..., Any]]:
        return list(self._handlers[event])

    def run_before(self, event: str, instance: Any, *args: Any) -> None:
        """Run ``before_*`` handlers; an exception aborts the operation."""
        for handler in self._handlers[event]:
            handler(instance, *args)

    def run_after(self, event: str, instance: Any, *args: Any) -> None:
        """Run ``after_*`` handlers; each failure is logged and the rest still run."""
        for handler in self._handlers[event]:
            try:
                handler(instance, *args)
            except Exception:
                logger.exception(
                    "%s hook %s failed for %s %s",
                    event,
                    getattr(handler, "__qualname__", handler),
                    self.model_name,
                    getattr(instance, "pk", None),
                )
