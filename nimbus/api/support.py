"""What every Nimbus API view shares: permissions, the ``{data, pagination}`` envelope, query
parameters, and mapping model-layer errors to HTTP."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.core.exceptions import RequestDataTooBig
from rest_framework import exceptions, status
from rest_framework.pagination import BasePagination
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler

from datamodel import DoesNotExist, Query, Rejected, SyncError, ValidationError
from datastore import Conflict, InvalidKey, InvalidValue, TooLarge, Unavailable

from .permissions import IsNimbusAdmin, IsNimbusUser

__all__ = [
    "EnvelopePagination",
    "IsNimbusAdmin",
    "IsNimbusUser",
    "handle_exception",
    "int_param",
    "listing",
    "public",
]

logger = logging.getLogger("nimbus.api")


def public(data: dict[str, Any]) -> dict[str, Any]:
    """An object as the API shows it: everything but the owners list."""
    return {key: value for key, value in data.items() if key != "_auth"}


def int_param(request: Request, name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise exceptions.ValidationError({name: [f"must be an integer, not {raw!r}"]}) from None
    if not minimum <= value <= maximum:
        raise exceptions.ValidationError({name: [f"must be between {minimum} and {maximum}"]})
    return value


def listing(
    request: Request,
    query: Query[Any],
    orderable: tuple[str, ...],
    *,
    expandable: bool = False,
    when_empty: Callable[[], object] | None = None,
) -> Response:
    """Apply ``limit``, ``page``, ``cursor`` and ``ordering`` and answer with the envelope.

    With ``expandable``, ``expand=objects`` lists the full objects instead of their metadata
    rows: the rows and their objects in one query (one request where the store combines them).
    ``when_empty`` runs when nothing matches at all (``total`` 0): a project's children list
    checks there that the project exists, since a live child proves it does.
    """
    meta = query.meta
    expand = request.query_params.get("expand")
    if expand not in (None, "") and not (expandable and expand == "objects"):
        choices = "objects" if expandable else "nothing here"
        raise exceptions.ValidationError({"expand": [f"must be one of: {choices}"]})
    limit = int_param(request, "limit", meta.default_limit, 1, meta.max_limit)
    page = int_param(request, "page", 1, 1, 1_000_000)
    ordering = request.query_params.get("ordering")
    if ordering:
        field = ordering.lstrip("-")
        if field not in orderable:
            raise exceptions.ValidationError(
                {"ordering": [f"must be one of {', '.join(orderable)} (prefix - to reverse)"]}
            )
        query = query.order_by(field, "desc" if ordering.startswith("-") else "asc")
    query = query.limit(limit).page(page)
    cursor = request.query_params.get("cursor")
    if cursor:
        query = query.after(cursor)
    if expand == "objects":
        result = query.with_data().list()
        rows = [public(instance.get_data()) for instance in result.data]
    else:
        result = query.list()
        rows = [public(row) for row in result.data]
    if when_empty is not None and not result.pagination["total"]:
        when_empty()
    return Response({"data": rows, "pagination": result.pagination})


class EnvelopePagination(BasePagination):
    """Describes the ``{data, pagination}`` envelope for the schema and the browsable API."""

    def get_results(self, data: dict[str, Any]) -> Any:
        return data["data"]

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["data", "pagination"],
            "properties": {
                "data": schema,
                "pagination": {
                    "type": "object",
                    "properties": {
                        "total": {"type": "integer"},
                        "limit": {"type": "integer"},
                        "offset": {"type": "integer", "nullable": True},
                        "page": {"type": "integer", "nullable": True},
                        "pages": {"type": "integer"},
                        "has_next": {"type": "boolean"},
                        "has_prev": {"type": "boolean"},
                        "next_cursor": {"type": "string", "nullable": True},
                    },
                },
            },
        }


class ConflictError(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "too_large"


class StorageUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Storage is temporarily unavailable; retry later."
    default_code = "unavailable"


def handle_exception(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus the model layer's errors as proper HTTP answers."""
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    elif isinstance(exc, TooLarge):
        exc = PayloadTooLarge(str(exc))
    elif isinstance(exc, (DoesNotExist, InvalidKey)):
        exc = exceptions.NotFound()  # a malformed id names nothing that could exist
    elif isinstance(exc, InvalidValue):
        exc = exceptions.ValidationError({"detail": [str(exc)]})
    elif isinstance(exc, RecursionError):
        exc = exceptions.ParseError("The request body is nested too deeply.")
    elif isinstance(exc, ValidationError):
        exc = exceptions.ValidationError(exc.errors)
    elif isinstance(exc, (Conflict, Rejected)):
        exc = ConflictError(str(exc) or None)
    elif isinstance(exc, (Unavailable, SyncError)):
        logger.error("storage failure: %s", exc)
        exc = StorageUnavailable()
    response = exception_handler(exc, context)
    request = context.get("request")
    if response is not None and request is not None:
        # Errors are JSON (or the browsable API's page of it), also from views that render
        # something else: the schema's YAML, Swagger UI's HTML.
        renderer = getattr(request, "accepted_renderer", None)
        if not isinstance(renderer, BrowsableAPIRenderer) and (
            renderer is None or renderer.media_type != "application/json"
        ):
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
    return response
