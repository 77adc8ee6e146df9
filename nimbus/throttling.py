"""Rate limits on the datastore's RateLimiter: the API throttle (per API key) and the login
rate limit (per client address and user name), under the kv-clients spec's keys:
``rl:api:{identifier}`` and ``rl:login:{address}_{user name}`` (IPv6 addresses as they are)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from datastore import RateLimiterClient, RateLimitResult

from . import conf
from .api.authentication import NimbusUser

__all__ = ["ApiKeyRateThrottle", "LoginRateLimitMiddleware"]

DEFAULT_LIMITS = {"anon": 60, "session": 600, "key": 1000, "login": 10}
LOGIN_PATHS = ("/admin/login/", "/api-auth/login/")
_UNSAFE = re.compile(r"[^A-Za-z0-9._~@+=:-]")


def limits() -> dict[str, int]:
    """Requests per minute (logins per five minutes), from ``settings.NIMBUS_RATE_LIMITS``."""
    return {**DEFAULT_LIMITS, **getattr(settings, "NIMBUS_RATE_LIMITS", {})}


def _safe(text: str) -> str:
    return _UNSAFE.sub("-", text)[:100] or "-"


def _client_address(request: HttpRequest) -> str:
    return _safe(request.META.get("REMOTE_ADDR", "unknown"))


class ApiKeyRateThrottle(BaseThrottle):
    """One counter per API key (its ``rate_limit`` per minute), per signed-in user (their
    ``user_id``), or per address for anonymous calls. Refused requests get 429 with
    ``Retry-After``."""

    window = 60

    def allow_request(self, request: Request, view: Any) -> bool:
        user = request.user
        configured = limits()
        if isinstance(user, NimbusUser):
            identifier = f"key_{user.key_id or user.user_id}"
            limit = user.rate_limit or configured["key"]
        elif getattr(user, "is_authenticated", False):
            identifier, limit = str(user.pk), configured["session"]
        else:
            identifier, limit = f"ip_{_client_address(request)}", configured["anon"]
        self.result: RateLimitResult = RateLimiterClient(conf.kv_store()).check_limit(
            identifier, limit, self.window, key_prefix="rl:api:"
        )
        return self.result.allowed

    def wait(self) -> float | None:
        result = getattr(self, "result", None)
        return None if result is None or result.allowed else float(result.retry_after)


class LoginRateLimitMiddleware:
    """Limit sign-in attempts per address and user name (``NIMBUS_RATE_LIMITS["login"]`` per
    five minutes); beyond it the login form answers 429 with ``Retry-After``."""

    window = 300

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and request.path in LOGIN_PATHS:
            username = _safe(str(request.POST.get("username", ""))).lower()
            result = RateLimiterClient(conf.kv_store()).check_limit(
                f"{_client_address(request)}_{username}",
                limits()["login"],
                self.window,
                key_prefix="rl:login:",
            )
            if not result.allowed:
                response = JsonResponse(
                    {"detail": "Too many sign-in attempts; try again later."}, status=429
                )
                response["Retry-After"] = str(result.retry_after)
                return response
        return self.get_response(request)
