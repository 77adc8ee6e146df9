"""The OpenAPI schema (drf-spectacular): the API-key scheme, and the error answers each
operation may give beside the ones its view declares."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework import permissions

from .responses import Error

__all__ = ["ApiKeyScheme", "NimbusAutoSchema"]

FIELD_ERRORS = {
    "type": "object",
    "description": "Messages per field (`{field: [message, ...]}`, nested like the body), or "
    "`{detail: message}` for a body that is not JSON at all.",
    "additionalProperties": {},
}
WRITES = ("POST", "PUT", "PATCH", "DELETE")


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "nimbus.api.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "sk_live_<32 hex digits>",
            "description": "An API key created at /api/keys/; shown once.",
        }


class NimbusAutoSchema(AutoSchema):
    """Adds to each operation the errors the API maps (``support.handle_exception``), in
    DRF's error shape, where the view does not declare that status itself."""

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        for code, description in self._errors().items():
            if code == "400":
                schema = self._component("FieldErrors", FIELD_ERRORS)
            else:
                schema = self.resolve_serializer(Error, "response").ref
            content = {"application/json": {"schema": schema}}
            responses.setdefault(code, {"description": description, "content": content})
        return responses

    def _errors(self) -> dict[str, str]:
        method = self.method.upper()
        errors = {}
        if method in ("POST", "PUT", "PATCH") or self.get_override_parameters():
            errors["400"] = "Invalid body or query parameters"
        errors["401"] = "Unknown, malformed or revoked API key"
        if not all(isinstance(p, permissions.AllowAny) for p in self.view.get_permissions()):
            errors["403"] = "Not allowed for this key or user"
        if "{" in self.path:
            errors["404"] = "No such object (or another user's)"
        if method in WRITES:
            errors["409"] = "Conflicts with the current state"
        if method in ("POST", "PUT", "PATCH"):
            errors["413"] = "Request body too large"
        errors["429"] = "Rate limit exceeded; see Retry-After"
        errors["503"] = "Storage temporarily unavailable"
        return errors

    def _component(self, name: str, schema: dict[str, Any]) -> dict[str, Any]:
        component = ResolvedComponent(
            name=name, type=ResolvedComponent.SCHEMA, object=name, schema=schema
        )
        self.registry.register_on_missing(component)
        return component.ref
