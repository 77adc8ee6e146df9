"""Rate limits on the datastore's RateLimiter: the API throttle (per API key) and the sign-in
limit (per client address and user name, and per address), under the kv-clients spec's keys:
``rl:api:{identifier}``, ``rl:login:{address}_{user name}`` and ``rl:login:{address}`` (IPv6
addresses as they are). The address is the client's (``nimbus.addresses``).

Sign-in fails closed: while the store cannot count an attempt, the attempt is refused (503).
The API throttle lets requests through then, unless ``NIMBUS_API_THROTTLE_FAIL_OPEN`` is false.
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
import unicodedata
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from datastore import RateLimiterClient, RateLimitResult, Unavailable

from . import conf
from .addresses import client_address
from .api.authentication import API_KEY_PREFIX, API_WINDOW, NimbusUser, key_identifier

__all__ = ["ApiKeyRateThrottle", "LoginRateLimitMiddleware", "login_name"]

logger = logging.getLogger("nimbus.throttling")

DEFAULT_LIMITS = {"anon": 60, "session": 600, "key": 1000, "login": 10}
# Without its own setting, the per-address sign-in limit is this many times the per-user one.
LOGIN_ADDRESS_FACTOR = 5
LOGIN_PATHS = ("/admin/login/", "/api-auth/login/")
LOGIN_PREFIX = "rl:login:"
UNAVAILABLE_RETRY_AFTER = 30  # seconds a refused sign-in waits while the store is down
MAX_NAME_LENGTH = 256  # longer names cannot sign in; only their start is normalized
_SAFE = re.compile(r"[A-Za-z0-9._~@+=:-]{1,150}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._~@+=:-]")


def limits() -> dict[str, int]:
    """Requests per minute (sign-ins per five minutes), from ``settings.NIMBUS_RATE_LIMITS``;
    ``login_address`` defaults to ``LOGIN_ADDRESS_FACTOR`` times ``login``."""
    configured = {**DEFAULT_LIMITS, **getattr(settings, "NIMBUS_RATE_LIMITS", {})}
    configured.setdefault("login_address", LOGIN_ADDRESS_FACTOR * configured["login"])
    return configured


def _address(request: HttpRequest) -> str:
    return _UNSAFE.sub("-", client_address(request) or "unknown")[:100]


def login_name(typed: str) -> str:
    """The user name as sign-in compares it, for the limiter's key: Django's login form strips
    it and NFKC-normalizes it (``UsernameField``), and emails are case-insensitive, so
    ``"staff "``, ``"\\u00a0staff"`` and a full-width ``staff`` are all ``staff``. A name with
    characters a key does not allow, or a long one, is a hash of it (``~``, 32 hex digits)."""
    name = unicodedata.normalize("NFKC", typed[:MAX_NAME_LENGTH].strip()).strip().casefold()
    if not name:
        return "-"
    if _SAFE.fullmatch(name):
        return name
    return "~" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class ApiKeyRateThrottle(BaseThrottle):
    """One counter per API key (its ``rate_limit`` per minute), per signed-in user (their
    ``user_id``), or per address for anonymous calls. Refused requests get 429 with
    ``Retry-After``. While the store is unavailable requests go through (a warning is
    logged), or with ``NIMBUS_API_THROTTLE_FAIL_OPEN = False`` are refused with 503."""

    window = API_WINDOW
    result: RateLimitResult

    def allow_request(self, request: Request, view: Any) -> bool:
        user = request.user
        configured = limits()
        if isinstance(user, NimbusUser):
            identifier = key_identifier(user.key_id) if user.key_id else f"key_{user.user_id}"
            limit = user.rate_limit or configured["key"]
            if user.throttle is not None:  # counted while the key was read
                self.result = user.throttle.result(limit)
                return self.result.allowed
        elif getattr(user, "is_authenticated", False):
            identifier, limit = str(user.pk), configured["session"]
        else:
            identifier, limit = f"ip_{_address(request)}", configured["anon"]
        fail_open = bool(getattr(settings, "NIMBUS_API_THROTTLE_FAIL_OPEN", True))
        limiter = RateLimiterClient(conf.kv_store(), fail_open=fail_open)
        self.result = limiter.check_limit(identifier, limit, self.window, key_prefix=API_KEY_PREFIX)
        return self.result.allowed

    def wait(self) -> float | None:
        result = getattr(self, "result", None)
        return None if result is None or result.allowed else float(result.retry_after)


class LoginRateLimitMiddleware:
    """Limit sign-in attempts (POSTs to the login pages) per address and normalized user name
    (``NIMBUS_RATE_LIMITS["login"]`` per five minutes) and per address whatever the name
    (``NIMBUS_RATE_LIMITS["login_address"]``); beyond either the attempt gets 429 with
    ``Retry-After``. While the store cannot count, attempts get 503 with ``Retry-After``."""

    window = 300

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and request.path in LOGIN_PATHS:
            refusal = self.check(request)
            if refusal is not None:
                return refusal
        return self.get_response(request)

    def check(self, request: HttpRequest) -> HttpResponse | None:
        """Count this attempt; the response refusing it, or ``None`` to let it through."""
        configured = limits()
        address = _address(request)
        typed = request.POST.get("username") or request.POST.get("email") or ""
        try:
            limiter = RateLimiterClient(conf.kv_store(), fail_open=False)
            results = [
                limiter.check_limit(
                    f"{address}_{login_name(str(typed))}",
                    configured["login"],
                    self.window,
                    key_prefix=LOGIN_PREFIX,
                ),
                limiter.check_limit(
                    address, configured["login_address"], self.window, key_prefix=LOGIN_PREFIX
                ),
            ]
        except Unavailable as exc:
            logger.error("rate limiter unavailable, refusing sign-in from %s: %s", address, exc)
            return _refusal(
                request,
                503,
                "Sign-in is temporarily unavailable (its rate limit cannot be checked); "
                "try again later.",
                UNAVAILABLE_RETRY_AFTER,
            )
        refused = [result.retry_after for result in results if not result.allowed]
        if refused:
            return _refusal(
                request, 429, "Too many sign-in attempts; try again later.", max(refused)
            )
        return None


def _refusal(request: HttpRequest, status: int, message: str, retry_after: int) -> HttpResponse:
    """``message`` as JSON (``{"detail": ...}``), or as a page for a browser."""
    response: HttpResponse
    if request.get_preferred_type(["application/json", "text/html"]) == "text/html":
        text = html.escape(message)
        response = HttpResponse(
            f"<!DOCTYPE html><html><head><title>{text}</title></head>"
            f"<body><h1>{text}</h1></body></html>",
            status=status,
            content_type="text/html; charset=utf-8",
        )
    else:
        response = JsonResponse({"detail": message}, status=status)
    response["Retry-After"] = str(retry_after)
    return response
