"""Who may call what. Kept free of ``rest_framework.views`` so DRF settings can import it."""

from __future__ import annotations

from rest_framework import exceptions, permissions
from rest_framework.request import Request

from .authentication import NimbusUser, acting_user

__all__ = ["IsNimbusAdmin", "IsNimbusUser"]


class IsNimbusUser(permissions.BasePermission):
    """An API key, or a staff session; read-only keys may not write."""

    message = "Authenticate with 'Authorization: Bearer sk_live_...' (or sign in as staff)."

    def has_permission(self, request: Request, view: object) -> bool:
        try:
            user = acting_user(request)
        except exceptions.NotAuthenticated:
            return False
        needed = "read" if request.method in permissions.SAFE_METHODS else "write"
        if user.can(needed):
            return True
        # An API key whose permissions do not cover the request: say so (the class message is
        # for callers that are neither a key nor a staff session).
        if needed == "write" and user.can("read"):
            self.message = (
                "This API key is read-only: writing needs a key with the 'write' permission."
            )
        else:
            self.message = f"This API key does not have the '{needed}' permission."
        return False


class IsNimbusAdmin(permissions.BasePermission):
    """Staff sessions, and API keys with the ``admin`` permission whose owner is an
    administrator now: a key's permissions bound what it does, also for an administrator."""

    message = "Only administrators may do this."

    def has_permission(self, request: Request, view: object) -> bool:
        user = request.user
        if isinstance(user, NimbusUser):
            if user.has_admin_powers:
                return True
            if user.is_admin:
                self.message = (
                    "Only administrators may do this: this API key does not have the 'admin' "
                    "permission."
                )
            return False
        return bool(getattr(user, "is_authenticated", False) and getattr(user, "is_staff", False))
