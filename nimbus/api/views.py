"""API views about the service and the caller: root, status, me, API keys, initialize; and
the JSON 404 for any other URL under ``/api/``."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from datamodel import Scope, SeedError, initialize
from datastore import DatastoreError

from .. import conf
from ..keys import KeyBounds, expires_in, issue_api_key
from ..models import ApiKey
from ..throttling import limits
from . import responses as shapes
from . import serializers as bodies
from .authentication import acting_user
from .permissions import is_nimbus_admin
from .support import EnvelopePagination, IsNimbusAdmin, IsNimbusUser, listing, public


class APIRootView(APIView):
    """Nimbus DataModel API."""

    permission_classes = [permissions.AllowAny]

    def get_view_name(self) -> str:
        return "Nimbus API"

    @extend_schema(exclude=True)
    def get(self, request: Request, format: str | None = None) -> Response:
        links = {
            name: reverse(f"api:{route}", request=request, format=format)
            for name, route in [
                ("me", "me"),
                ("keys", "keys"),
                ("projects", "projects"),
                ("status", "status"),
                ("system/initialize", "initialize"),
                ("schema", "schema"),
                ("docs", "docs"),
            ]
        }
        return Response(links)


@csrf_exempt
def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Any other URL under ``/api/``: a JSON 404 in DRF's error shape, whatever the method."""
    detail = f"No API endpoint at {request.path}; {reverse('api:root')} lists them."
    return JsonResponse({"detail": detail}, status=404)


class StatusView(APIView):
    """Health of the configured datastore. Nimbus admins also see backends and namespaces."""

    permission_classes = [permissions.AllowAny]

    @extend_schema(responses={200: shapes.Status, 503: shapes.Status})
    def get(self, request: Request, format: str | None = None) -> Response:
        kv_status = conf.kv_store().status()
        try:
            conf.sql_database().execute("SELECT 1")
            sql_healthy, sql_detail = True, ""
        except DatastoreError as exc:
            sql_healthy, sql_detail = False, str(exc)
        healthy = kv_status.healthy and sql_healthy
        body: dict[str, Any] = {"healthy": healthy}
        if is_nimbus_admin(request):
            body["kv"] = {
                "backend": kv_status.backend,
                "healthy": kv_status.healthy,
                "namespaces": kv_status.namespaces,
                "size": kv_status.size,
                "detail": kv_status.detail,
            }
            body["d1"] = {
                "backend": conf.sql_database().backend_name,
                "healthy": sql_healthy,
                "detail": sql_detail,
            }
            body["adapter"] = conf.load_settings().adapter
        return Response(body, status=200 if healthy else 503)


class MeView(APIView):
    """Who is calling, and with which key."""

    permission_classes = [IsNimbusUser]

    @extend_schema(responses=shapes.Me)
    def get(self, request: Request, format: str | None = None) -> Response:
        user = acting_user(request)
        body: dict[str, Any] = {
            "user_id": user.user_id,
            "email": user.email,
            "is_admin": user.is_admin,
            "authenticated_by": "api_key" if user.key_id else "session",
        }
        if user.key_id is not None and isinstance(request.auth, dict):
            body["key"] = {
                "id": user.key_id,
                "name": request.auth.get("name"),
                "prefix": request.auth.get("prefix"),
                "permissions": user.permissions,
                "rate_limit": user.rate_limit,
                "expires_at": user.expires_at,
            }
        return Response(body)


class ApiKeyViewSet(viewsets.ViewSet):
    """Your API keys. A new key is shown once, in the response that creates it."""

    permission_classes = [IsNimbusUser]
    pagination_class = EnvelopePagination
    serializer_class = bodies.ApiKeyCreateSerializer

    def scope(self) -> Scope:
        """The request's scope: one per request, so a project read at its start stands for
        the objects the request creates in it (``Scope.live``)."""
        scope = getattr(self, "_scope", None)
        if scope is None:
            scope = self._scope = Scope(conf.get_connection(), acting_user(self.request).user_id)
        return scope

    @extend_schema(responses=shapes.ApiKeyListItem(many=True))
    def list(self, request: Request) -> Response:
        return listing(request, ApiKey.objects.bind(self.scope()).query(), ("created_at", "name"))

    @extend_schema(
        request=bodies.ApiKeyCreateSerializer,
        responses={
            201: shapes.ApiKeyCreated,
            409: OpenApiResponse(shapes.Error, description="The user has the most keys allowed"),
        },
    )
    def create(self, request: Request) -> Response:
        body = bodies.ApiKeyCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = body.validated_data
        user = acting_user(request)
        within = None
        if user.key_id is not None:  # a key creates keys within its own bounds
            within = KeyBounds(
                permissions=frozenset(user.permissions),
                rate_limit=user.rate_limit or limits()["key"],
                expires_at=user.expires_at,
            )
        expires_at = values.get("expires_at")
        if "expires_in_days" in values:
            expires_at = expires_in(values["expires_in_days"])
        key, secret = issue_api_key(
            self.scope(),
            name=values["name"],
            owner_email=user.email,
            owner_is_admin=user.is_admin,
            permissions=values.get("permissions"),
            rate_limit=values.get("rate_limit"),
            expires_at=expires_at,
            within=within,
        )
        return Response({**public(key.get_data()), "key": secret}, status=status.HTTP_201_CREATED)

    @extend_schema(
        responses={204: None, 404: OpenApiResponse(shapes.Error, description="No such key")}
    )
    def destroy(self, request: Request, key_id: str) -> Response:
        key = ApiKey.objects.bind(self.scope()).get(key_id)
        key.set("active", False)
        key.save()
        key.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class InitializeView(APIView):
    """The spec's ``system.initialize``: create and migrate the metadata tables, run seeds.

    POST ``{"dry_run": true}`` to only see what would change. Administrators only.
    ``success`` is false when a unique index was refused (``data.refused`` says why); every
    other change was applied.
    """

    permission_classes = [IsNimbusAdmin]
    serializer_class = bodies.InitializeSerializer  # the browsable API's form

    @extend_schema(
        request=bodies.InitializeSerializer,
        responses={
            200: shapes.InitializeReport,
            500: OpenApiResponse(shapes.InitializeReport, description="Storage or seeds failed"),
        },
    )
    def post(self, request: Request, format: str | None = None) -> Response:
        body = bodies.InitializeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        dry_run = body.validated_data["dry_run"]
        try:
            report = initialize(conf.get_connection(), dry_run=dry_run)
        except (DatastoreError, SeedError) as exc:
            return Response({"success": False, "error": str(exc)}, status=500)
        return Response({"success": not report.refused, "data": report.to_json()})
