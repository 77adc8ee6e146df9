"""Who may call what. Kept free of ``rest_framework.views`` so DRF settings can import it."""

from __future__ import annotations

from rest_framework import exceptions, permissions
from rest_framework.request import Request

from .authentication import NimbusUser, acting_user

__all__ = ["IsNimbusAdmin", "IsNimbusUser", "is_nimbus_admin"]


def is_nimbus_admin(request: Request) -> bool:
    """Whether the caller is a Nimbus admin: an admin signed in, or a key with the ``admin``
    permission whose owner is an administrator now. A Django user's ``is_staff`` counts for
    nothing here: only ``is_admin`` on the USER does."""
    try:
        user = acting_user(request)
    except exceptions.NotAuthenticated:
        return False
    return user.has_admin_powers


class IsNimbusUser(permissions.BasePermission):
    """An API key, or a signed-in Nimbus user; read-only keys may not write."""

    message = "Authenticate with 'Authorization: Bearer sk_live_...' (or sign in)."

    def has_permission(self, request: Request, view: object) -> bool:
        try:
            user = acting_user(request)
        except exceptions.NotAuthenticated:
            return False
        needed = "read" if request.method in permissions.SAFE_METHODS else "write"
        if user.can(needed):
            return True
        # An API key whose permissions do not cover the request: say so (the class message is
        # for callers that are neither a key nor a signed-in user).
        if needed == "write" and user.can("read"):
            self.message = (
                "This API key is read-only: writing needs a key with the 'write' permission."
            )
        else:
            self.message = f"This API key does not have the '{needed}' permission."
        return False


class IsNimbusAdmin(permissions.BasePermission):
    """Nimbus admins (``is_nimbus_admin``): signed in, or by a key with the ``admin``
    permission of a user who is an administrator now."""

    message = "Only administrators may do this."

    def has_permission(self, request: Request, view: object) -> bool:
        if is_nimbus_admin(request):
            return True
        user = request.user
        if isinstance(user, NimbusUser) and user.is_admin:
            self.message = (
                "Only administrators may do this: this API key does not have the 'admin' "
                "permission."
            )
        return False
