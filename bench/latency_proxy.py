"""A loopback HTTP proxy that adds latency and counts what it forwards.

It stands between a client and the local Cloudflare API (or the gateway Worker) to make a
loopback call cost what a call across the internet costs: every request waits ``delay_ms``
before it is forwarded and again before its answer goes back (40 ms each way by default, an
80 ms round trip). It counts the requests it forwards by path class: ``rest_kv`` (Workers KV
REST API), ``rest_d1`` (D1 REST API), ``gateway`` (the gateway Worker's ``/v1/``) and
``other``. Connections are kept alive on both sides. It binds and forwards to 127.0.0.1 only.

In a program::

    with LatencyProxy("http://127.0.0.1:8787/", delay_ms=40) as proxy:
        ...  # point clients at proxy.url
        print(proxy.counts())

From a shell (until Ctrl-C, then the counts)::

    python -m bench.latency_proxy --target http://127.0.0.1:8787/ --delay-ms 40 --port 9000
"""

from __future__ import annotations

import argparse
import re
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx

__all__ = ["PATH_CLASSES", "LatencyProxy", "path_class"]

LOOPBACK = "127.0.0.1"
PATH_CLASSES = ("rest_kv", "rest_d1", "gateway", "other")
_REST_KV = re.compile(r"^/client/v4/accounts/[^/]+/storage/kv/")
_REST_D1 = re.compile(r"^/client/v4/accounts/[^/]+/d1/")
# Per connection, not forwarded (RFC 9110 7.6.1); the body is re-framed with Content-Length
# and arrives decoded (httpx undoes any content encoding).
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "content-encoding",
    "host",
}
_NO_DELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def path_class(path: str) -> str:
    """Which kind of Cloudflare request a path is: one of ``PATH_CLASSES``."""
    if _REST_KV.match(path):
        return "rest_kv"
    if _REST_D1.match(path):
        return "rest_d1"
    if path.startswith("/v1/"):
        return "gateway"
    return "other"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def _forward(self) -> None:
        proxy = self.server.proxy
        body = self._body()
        if proxy.stopped:
            self.close_connection = True
            self.send_error(503, "the latency proxy is stopping")
            return
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP]
        proxy.count(self.path)
        time.sleep(proxy.delay)  # client -> API
        try:
            response = proxy.upstream.request(
                self.command, proxy.target + self.path, content=body, headers=headers
            )
            status, content = response.status_code, response.content
            answer = [(k, v) for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP]
            reason = response.reason_phrase
        except httpx.HTTPError as exc:
            status, reason = 502, "Bad Gateway"
            content = f"latency proxy: upstream failed: {exc!r}".encode()
            answer = [("content-type", "text/plain")]
        time.sleep(proxy.delay)  # API -> client
        head = [f"HTTP/1.1 {status} {reason}"]
        head += [f"{k}: {v}" for k, v in answer]
        head.append(f"content-length: {len(content)}")
        payload = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        # one write for head and body: no small-segment stall on loopback
        self.wfile.write(payload + (b"" if self.command == "HEAD" else content))
        self.wfile.flush()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: LatencyProxy


class LatencyProxy:
    """A running proxy on 127.0.0.1 in front of ``target`` (a loopback base URL): ``url`` is
    where clients go; ``delay_ms`` is added each way; ``counts()`` are the requests forwarded
    per path class."""

    def __init__(self, target: str, *, delay_ms: float = 40.0, port: int = 0) -> None:
        parts = urlsplit(target)
        if parts.scheme != "http" or parts.hostname != LOOPBACK:
            raise ValueError(f"the proxy forwards to http://{LOOPBACK}:PORT only, not {target!r}")
        if delay_ms < 0:
            raise ValueError("delay_ms must not be negative")
        self.target = f"http://{parts.netloc}"
        self.delay = delay_ms / 1000
        self.delay_ms = delay_ms
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.upstream = httpx.Client(
            transport=httpx.HTTPTransport(socket_options=_NO_DELAY),
            timeout=httpx.Timeout(120.0, connect=5.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        self._server = _Server((LOOPBACK, port), _Handler)
        self._server.proxy = self
        self.port = self._server.server_address[1]
        self.url = f"http://{LOOPBACK}:{self.port}/"
        self._thread: threading.Thread | None = None
        self.stopped = False

    def count(self, path: str) -> None:
        with self._lock:
            self._counts[path_class(path)] += 1

    def counts(self) -> dict[str, int]:
        """Requests forwarded so far, per path class (every class, zeros included)."""
        with self._lock:
            return {name: self._counts[name] for name in PATH_CLASSES}

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def start(self) -> LatencyProxy:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"latency-proxy-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopped = True  # kept-alive connections get 503 from now on
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        self.upstream.close()

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency_proxy", description=__doc__)
    parser.add_argument("--target", required=True, help=f"http://{LOOPBACK}:PORT/ to forward to")
    parser.add_argument("--delay-ms", type=float, default=40.0, help="added each way (ms)")
    parser.add_argument("--port", type=int, default=0, help="where to listen (0: any free port)")
    options = parser.parse_args(argv)
    proxy = LatencyProxy(options.target, delay_ms=options.delay_ms, port=options.port)
    with proxy:
        print(f"forwarding {proxy.url} -> {proxy.target} (+{options.delay_ms:g} ms each way)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    print(f"requests forwarded: {proxy.counts()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
