"""The latency proxy forwards to loopback only, answers as the target does, keeps connections
alive and counts requests by path class."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from bench.latency_proxy import LatencyProxy, path_class


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        payload = f"{self.command} {self.path} {body.decode()}".encode()
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("x-echo", "yes")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = _answer


@pytest.fixture
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_path_classes() -> None:
    assert path_class("/client/v4/accounts/a/storage/kv/namespaces/n/values/k") == "rest_kv"
    assert path_class("/client/v4/accounts/a/d1/database/d/query") == "rest_d1"
    assert path_class("/v1/run") == "gateway"
    assert path_class("/__test/reset") == "other"


def test_forwards_and_counts_by_path_class(upstream: str) -> None:
    with LatencyProxy(upstream, delay_ms=0) as proxy, httpx.Client(base_url=proxy.url) as http:
        kv = http.get("/client/v4/accounts/a/storage/kv/namespaces/n/values/k?x=1")
        assert (kv.status_code, kv.text) == (
            200,
            "GET /client/v4/accounts/a/storage/kv/namespaces/n/values/k?x=1 ",
        )
        assert kv.headers["x-echo"] == "yes"
        run = http.post("/v1/run", content=b'{"operations": []}')
        assert (run.status_code, run.text) == (201, 'POST /v1/run {"operations": []}')
        http.post("/client/v4/accounts/a/d1/database/d/query", json={"sql": "SELECT 1"})
        http.delete("/v1/run")
        assert proxy.counts() == {"rest_kv": 1, "rest_d1": 1, "gateway": 2, "other": 0}
        assert proxy.total() == 4


def test_keeps_the_client_connection_alive(upstream: str) -> None:
    with LatencyProxy(upstream, delay_ms=1) as proxy, httpx.Client(base_url=proxy.url) as http:
        ports = set()
        for _ in range(3):
            response = http.get("/v1/status")
            assert response.status_code == 200
            stream = response.extensions["network_stream"]
            ports.add(stream.get_extra_info("client_addr")[1])
        assert len(ports) == 1  # one connection for the three requests


@pytest.mark.parametrize(
    "target", ["http://10.0.0.1:8787/", "https://127.0.0.1:8787/", "http://localhost.example/"]
)
def test_forwards_to_loopback_only(target: str) -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        LatencyProxy(target)
