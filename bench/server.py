"""Run the Django app under gunicorn on a free loopback port, on stores given as URLs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Stores:
    """Where the app keeps its data: ``NIMBUS_KV_URL`` and ``NIMBUS_D1_URL`` values."""

    kv_url: str
    d1_url: str

    @classmethod
    def for_backend(
        cls, backend: str, directory: Path, *, redis_url: str, key_prefix: str
    ) -> Stores:
        """SQLite files in ``directory`` (the default), or Redis for KV (its keys under
        ``key_prefix``, private to the run) with the metadata in a SQLite file."""
        d1 = f"sqlite:///{directory / 'metadata.sqlite3'}"
        if backend == "sqlite":
            return cls(f"sqlite:///{directory / 'kv.sqlite3'}", d1)
        if backend == "redis":
            separator = "&" if "?" in redis_url else "?"
            return cls(f"{redis_url}{separator}key_prefix={key_prefix}", d1)
        raise ValueError(f"unknown backend {backend!r}: expected sqlite or redis")

    def environment(self, var_dir: Path) -> dict[str, str]:
        return {
            "NIMBUS_KV_URL": self.kv_url,
            "NIMBUS_D1_URL": self.d1_url,
            "NIMBUS_VAR_DIR": str(var_dir),
            "DJANGO_SETTINGS_MODULE": "nimbus.settings",
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": "bench-" + os.urandom(16).hex(),
            "DJANGO_ALLOWED_HOSTS": LOOPBACK,
            "DJANGO_SECURE_SSL_REDIRECT": "false",  # plain HTTP on loopback
        }


def manage(env: Mapping[str, str], *args: str) -> str:
    """Run ``manage.py`` with these environment variables; its stdout, or an error with stderr."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


@contextmanager
def gunicorn(
    env: Mapping[str, str],
    *,
    workers: int,
    threads: int = 1,
    app: str = "nimbus.wsgi:application",
    ready_path: str = "/api/status/",
) -> Iterator[str]:
    """Serve ``app`` with gunicorn on loopback until the block ends; yields the base URL."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        app,
        f"--bind={LOOPBACK}:{port}",
        f"--workers={workers}",
        f"--threads={threads}",
        "--backlog=2048",
        "--timeout=120",
        "--log-level=warning",
    ]
    base_url = f"http://{LOOPBACK}:{port}"
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            _wait_ready(process, base_url + ready_path, log)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(process: subprocess.Popen[bytes], url: str, log: IO[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"gunicorn exited with {process.returncode}:\n{log.read()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not answer {url} within 60 s")
