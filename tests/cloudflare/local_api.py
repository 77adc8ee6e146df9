"""Start and drive the local Cloudflare REST API (server.mjs on Miniflare) from pytest."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from datastore.routing import DEFAULT_CLASS_NAMESPACES

HERE = Path(__file__).resolve().parent
ACCOUNT_ID = "test-account"
API_TOKEN = "test-token"
D1_DATABASE_ID = "d1-test-db"
GATEWAY_SECRET = "test-gateway-secret-0123456789abcdef"
GATEWAY_PREVIOUS_SECRET = "test-gateway-previous-secret-0123456789"
# The local API has no rate limit: a request budget the suite never spends (the budget's own
# tests set theirs).
TEST_BUDGET = 10_000_000

# Namespaces the test suite writes to, besides the Nimbus ones.
TEST_NAMESPACES = [
    "TESTNS",
    "NS_ONE",
    "NS_TWO",
    "NS_STATUS",
    "EMPTY_NS",
    "COUNTERS",
    "NIMBUS_NOTES",
    "NIMBUS_SETTINGS",
    "NIMBUS_PLANS",
    "NIMBUS_MEMBERS",
    "NIMBUS_WORK",
]


def namespace_id(name: str) -> str:
    return "ns-" + name.lower().replace("_", "-")


NAMESPACE_IDS = {
    name: namespace_id(name) for name in [*TEST_NAMESPACES, *DEFAULT_CLASS_NAMESPACES.values()]
}


def unavailable_reason() -> str | None:
    """Why the local API cannot start here, or None."""
    if shutil.which("node") is None:
        return "Node.js is not installed (needed to run Miniflare)"
    if not (HERE / "node_modules" / "miniflare").is_dir():
        return "Miniflare is not installed: run `npm ci` in tests/cloudflare"
    return None


class LocalCloudflare:
    """A running local Cloudflare API; ``base_url`` is what the backends are pointed at."""

    def __init__(self, persist: str | None = None) -> None:
        config = {
            "account": ACCOUNT_ID,
            "token": API_TOKEN,
            # the interop Worker binds the NIMBUS_* namespaces under their own names
            "kv": {
                namespace_id: (name if name.startswith("NIMBUS_") else None)
                for name, namespace_id in NAMESPACE_IDS.items()
            },
            "d1": [D1_DATABASE_ID],
            "persist": persist,
            # the gateway Worker binds every namespace under its own name
            "gateway": {
                "namespaces": NAMESPACE_IDS,
                "vars": {
                    "NIMBUS_GATEWAY_SECRET": GATEWAY_SECRET,
                    "NIMBUS_GATEWAY_SECRET_PREVIOUS": GATEWAY_PREVIOUS_SECRET,
                    "NIMBUS_GATEWAY_PLAN": "paid",
                },
            },
        }
        self.process = subprocess.Popen(
            ["node", str(HERE / "server.mjs"), json.dumps(config)],
            cwd=HERE,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.url = self._wait_ready(timeout=60)
        self.base_url = self.url + "client/v4"
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def _wait_ready(self, timeout: float) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.5)
            if ready:
                line = self.process.stdout.readline()
                if line.startswith("READY "):
                    url = line.split(" ", 1)[1].strip()
                    return url if url.endswith("/") else url + "/"
                if not line and self.process.poll() is not None:
                    break
        self.stop()
        stderr = self.process.stderr.read() if self.process.stderr else ""
        raise RuntimeError(f"local Cloudflare API did not start: {stderr[-2000:]}")

    def kv_options(self, **overrides: Any) -> dict[str, Any]:
        return {
            "account_id": ACCOUNT_ID,
            "api_token": API_TOKEN,
            "namespaces": NAMESPACE_IDS,
            "base_url": self.base_url,
            "budget_limit": TEST_BUDGET,
            **overrides,
        }

    def d1_options(self, **overrides: Any) -> dict[str, Any]:
        return {
            "account_id": ACCOUNT_ID,
            "api_token": API_TOKEN,
            "database_id": D1_DATABASE_ID,
            "base_url": self.base_url,
            "budget_limit": TEST_BUDGET,
            **overrides,
        }

    def gateway_options(self, **overrides: Any) -> dict[str, Any]:
        """Options of the gateway backends (KV and D1) pointed at the gateway Worker."""
        return {
            "url": self.url,
            "secret": GATEWAY_SECRET,
            "namespaces": list(NAMESPACE_IDS),
            **overrides,
        }

    def nimbus_settings(self, path: str = "rest") -> dict[str, Any]:
        """``settings.NIMBUS`` for the app on this Cloudflare: through the REST API (``rest``)
        or the gateway Worker (``gateway``), objects on the KV adapter."""
        if path == "rest":
            kv = {
                "BACKEND": "datastore.backends.cloudflare.CloudflareKVStore",
                "OPTIONS": self.kv_options(),
            }
            d1 = {
                "BACKEND": "datastore.backends.cloudflare.CloudflareD1Database",
                "OPTIONS": self.d1_options(),
            }
        else:
            options = self.gateway_options()
            kv = {"BACKEND": "datastore.backends.gateway.GatewayKVStore", "OPTIONS": options}
            d1 = {
                "BACKEND": "datastore.backends.gateway.GatewayD1Database",
                "OPTIONS": {"url": options["url"], "secret": options["secret"]},
            }
        return {"KV": kv, "D1": d1, "ADAPTER": "kv"}

    def reset(self) -> None:
        """Empty every namespace and the database, and clear queued faults."""
        self.http.post("__test/reset").raise_for_status()

    def inject_faults(self, faults: list[dict[str, Any]]) -> None:
        """Queue failures for the next API requests (see api-worker.mjs)."""
        self.http.post("__test/faults", json=faults).raise_for_status()

    def requests_seen(self) -> int:
        """API requests received since the last call."""
        return int(self.http.get("__test/requests").json()["requests"])

    def app(self, method: str, user_id: str, class_name: str, object_id: str, body: Any = None):
        """Call the interop Worker written like the datastore spec's JS KVAdapter."""
        return self.http.request(method, f"app/{user_id}/{class_name}/{object_id}", json=body)

    def kv_clients(self, method: str, *parts: str, body: Any = None, **params: Any):
        """Call the interop Worker's kv-clients routes (``/kv-clients/{client}/...``)."""
        path = "/".join(quote(part, safe="") for part in ("kv-clients", *parts))
        return self.http.request(method, path, json=body, params=params or None)

    def stop(self) -> None:
        if self.process.poll() is None:
            if self.process.stdin:
                self.process.stdin.close()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if hasattr(self, "http"):
            self.http.close()


def start() -> LocalCloudflare:
    return LocalCloudflare(persist=os.environ.get("NIMBUS_TEST_CF_PERSIST"))
