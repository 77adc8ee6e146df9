"""API routes whose trailing slash is optional.

``/api/projects/`` is the canonical form (``reverse()`` and the OpenAPI schema give it), and
``/api/projects`` reaches the same view. Django's ``APPEND_SLASH`` would answer the slashless
form with a redirect instead, which drops a POST's body (and raises under ``DEBUG``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.urls import URLPattern, URLResolver
from django.urls.resolvers import RoutePattern

__all__ = ["SlashOptional", "path"]


class SlashOptional(RoutePattern):
    """A ``path()`` route that also matches its path without the trailing slash."""

    def match(self, path: str) -> tuple[str, tuple[Any, ...], dict[str, Any]] | None:
        found = super().match(path)
        if found is None and not path.endswith("/"):
            found = super().match(path + "/")
        return found


def path(
    route: str,
    view: Callable[..., Any] | tuple[Any, str | None, str | None],
    kwargs: dict[str, Any] | None = None,
    name: str | None = None,
) -> URLPattern | URLResolver:
    """``django.urls.path`` (a view or an ``include()``) with the trailing slash optional."""
    if isinstance(view, tuple):
        urlconf, app_name, namespace = view
        return URLResolver(
            SlashOptional(route, is_endpoint=False),
            urlconf,
            kwargs,
            app_name=app_name,
            namespace=namespace,
        )
    return URLPattern(SlashOptional(route, name=name, is_endpoint=True), view, kwargs, name)
