"""Project rules a reader can check: the storage and model layers never import Django, and
storage clients are only imported by backends."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_datastore_and_datamodel_do_not_import_django() -> None:
    code = (
        "import sys, datastore, datamodel\n"
        "import datastore.backends.memory, datastore.backends.sqlite, datastore.backends.redis\n"
        "import datastore.adapters, datastore.facade\n"
        "bad = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_storage_clients_are_only_imported_by_backends() -> None:
    pattern = re.compile(r"^\s*(from|import)\s+(redis|sqlite3|httpx)\b", re.MULTILINE)
    offenders = []
    for package in ("datastore", "datamodel", "nimbus"):
        for path in (ROOT / package).rglob("*.py"):
            if path.is_relative_to(ROOT / "datastore" / "backends"):
                continue
            if pattern.search(path.read_text()):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
