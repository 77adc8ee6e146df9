"""HTTP for the Cloudflare REST API: one pooled httpx client per process, Cloudflare's envelope,
error mapping, bounded retries, and every attempt within the token's request budget.

Retry policy. A request is retried (exponential backoff with full jitter, honouring
``Retry-After``, at most ``max_attempts`` tries) when it certainly was not applied, or when
applying it twice is harmless:

* connection failures before the request was sent, and HTTP 429: always retried (a 429's
  ``Retry-After`` holds the token's request budget, ``_cloudflare_budget``, that long);
* read timeouts, dropped connections and 5xx: retried only for idempotent requests. The caller
  says which requests are idempotent; a write that may already have been applied is otherwise
  reported as ``Unavailable`` saying so, never blindly repeated.
"""

from __future__ import annotations

import email.utils
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from ..contract import RoundTripCounter
from ..errors import (
    AccessDenied,
    Conflict,
    DatastoreError,
    IntegrityError,
    InvalidValue,
    NotFound,
    QueryError,
    RateLimited,
    TooLarge,
    Unavailable,
)
from ._cloudflare_budget import RequestBudget

__all__ = ["DEFAULT_BASE_URL", "CloudflareHTTP", "shared_client"]

DEFAULT_BASE_URL = "https://api.cloudflare.com/client/v4"
MAX_RETRY_AFTER = 30.0

_lock = threading.Lock()
_client: httpx.Client | None = None
_client_pid: int | None = None


def shared_client() -> httpx.Client:
    """The process-wide pooled client (a forked child gets its own)."""
    global _client, _client_pid
    with _lock:
        if _client is None or _client_pid != os.getpid():
            _client = httpx.Client(
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
                timeout=httpx.Timeout(30.0, connect=5.0),
            )
            _client_pid = os.getpid()
        return _client


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def _errors(response: httpx.Response) -> tuple[int | None, str]:
    """The first error code and all messages of a Cloudflare envelope."""
    try:
        body = response.json()
    except ValueError:
        return None, response.text[:300] or response.reason_phrase
    errors = body.get("errors") if isinstance(body, dict) else None
    if not errors:
        return None, response.reason_phrase
    code = errors[0].get("code")
    return code, "; ".join(f"[{e.get('code')}] {e.get('message')}" for e in errors)


def map_error(response: httpx.Response, what: str) -> DatastoreError:
    """Translate a failed response into the ``datastore.errors`` hierarchy. A D1 SQL error is
    read before the status class: D1 may send one with a 5xx, and it is not temporary."""
    status = response.status_code
    code, message = _errors(response)
    text = f"Cloudflare {what} failed (HTTP {status}): {message}"
    if code is None and not _is_envelope(response):
        text += f" (not a Cloudflare API answer: check the base URL; reached {_url(response)})"
    if code == 7500 or "D1_ERROR" in message or "SQLITE_" in message:
        if "constraint failed" in message.lower():
            return IntegrityError(text)
        return QueryError(text)
    if "Total size of request exceeds" in message:  # a bulk read past the 25 MB cap
        return TooLarge(text)
    if status in (401, 403):
        return AccessDenied(text)
    if status == 404:
        return NotFound(text)
    if status == 409:
        return Conflict(text)
    if status in (413, 414):
        return TooLarge(text)
    if status == 429:
        return RateLimited(text, retry_after=_retry_after(response))
    if status >= 500:
        return Unavailable(text)
    return InvalidValue(text)


class CloudflareHTTP:
    """Requests against one account's API with auth, round-trip counting and retries."""

    def __init__(
        self,
        *,
        account_id: str,
        api_token: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 30.0,
        max_attempts: int = 4,
        backoff: float = 0.25,
        max_backoff: float = 8.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        round_trips: RoundTripCounter | None = None,
        budget: RequestBudget | None = None,
    ) -> None:
        if not account_id or not api_token:
            raise InvalidValue("Cloudflare needs an account id and an API token")
        if max_attempts < 1:
            raise InvalidValue("max_attempts must be at least 1")
        self.account_url = f"{base_url.rstrip('/')}/accounts/{account_id}"
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.sleep = sleep
        self.round_trips = round_trips or RoundTripCounter()
        self.budget = budget
        self._headers = {"Authorization": f"Bearer {api_token}"}
        # A transport given explicitly (tests) gets a private client; otherwise share the pool.
        self._client = httpx.Client(transport=transport) if transport is not None else None

    @property
    def client(self) -> httpx.Client:
        return self._client or shared_client()

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER)
        return random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))

    def request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        idempotent: bool,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        files: Any = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        missing_ok: bool = False,
        envelope: bool = True,
    ) -> httpx.Response | None:
        """Send one API call; ``None`` for a missing key when ``missing_ok``. Raises mapped errors.

        ``envelope=False`` for raw bodies (KV values), which are never read as an envelope.
        """
        url = f"{self.account_url}{path}"
        request_headers = {**self._headers, **(headers or {})}
        last_error: DatastoreError | None = None
        for attempt in range(self.max_attempts):
            if self.budget is not None:
                self.budget.acquire(f"Cloudflare {what}")
            self.round_trips.add()
            retry_after: float | None = None
            try:
                response = self.client.request(
                    method,
                    url,
                    params=params,
                    json=json,
                    content=content,
                    files=files,
                    data=data,
                    headers=request_headers,
                    timeout=self.timeout,
                )
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                last_error = Unavailable(f"Cloudflare {what}: cannot connect: {exc!r}")
                safe = True
            except httpx.TransportError as exc:
                last_error = Unavailable(
                    f"Cloudflare {what}: no response ({exc!r}); the request may have been "
                    "applied" + ("" if idempotent else " and is not idempotent, so not retried")
                )
                safe = idempotent
            else:
                if self.budget is not None:
                    self.budget.observe(response.headers)
                if missing_ok and response.status_code == 404 and _is_missing_key(response):
                    return None
                if response.is_success:
                    if envelope and _envelope_failed(response):
                        raise map_error(response, what)
                    return response
                error = map_error(response, what)
                if response.status_code == 429:
                    retry_after = _retry_after(response)
                    if self.budget is not None and retry_after is not None:
                        self.budget.hold(retry_after)  # the next acquire() waits it out
                        retry_after = 0.0
                    last_error, safe = error, True
                elif response.status_code >= 500 and isinstance(error, Unavailable):
                    if not idempotent:
                        raise Unavailable(
                            f"{error}; the request may have been applied and is not "
                            "idempotent, so it was not retried"
                        )
                    last_error, safe = error, True
                else:
                    raise error
            if not safe:
                raise last_error
            if attempt + 1 < self.max_attempts:
                delay = self._delay(attempt, retry_after)
                if delay > 0:
                    self.sleep(delay)
        assert last_error is not None
        last_error.args = (f"{last_error} (gave up after {self.max_attempts} attempts)",)
        raise last_error

    def result(self, response: httpx.Response) -> Any:
        """The ``result`` member of a successful envelope."""
        try:
            return response.json()["result"]
        except (ValueError, KeyError, TypeError) as exc:
            raise Unavailable(
                f"Cloudflare returned an unexpected body: {response.text[:200]}"
            ) from exc

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


KEY_NOT_FOUND = 10009


def _is_missing_key(response: httpx.Response) -> bool:
    """A 404 for a missing key: Cloudflare's own "key not found" (code 10009 in its
    envelope). Any other 404 (a missing namespace, a wrong route or base URL, a proxy's page)
    is an error that says what was reached, never "missing"."""
    code, _ = _errors(response)
    return code == KEY_NOT_FOUND


def _url(response: httpx.Response) -> str:
    try:
        return str(response.request.url)
    except RuntimeError:  # a response made without a request (tests)
        return "an unknown URL"


def _is_envelope(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and "success" in body


def _envelope_failed(response: httpx.Response) -> bool:
    if not response.headers.get("content-type", "").startswith("application/json"):
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("success") is False
