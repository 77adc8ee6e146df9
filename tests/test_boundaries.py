"""Project rules a reader can check: the storage and model layers never import Django, and
storage clients are only imported by backends."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

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


def _import_edges(package: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (any import, ``TYPE_CHECKING`` ones too)."""
    import ast

    root = ROOT / package
    modules = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts): path
        for path in root.rglob("*.py")
        if "migrations" not in path.parts
    }
    edges: dict[str, set[str]] = {module: set() for module in modules}
    for module, path in modules.items():
        base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            parts = base[: len(base) - node.level + 1] if node.level else []
            target = ".".join(parts + (node.module.split(".") if node.module else []))
            for candidate in (target, *(f"{target}.{alias.name}" for alias in node.names)):
                if candidate in modules and candidate != module:
                    edges[module].add(candidate)
    return edges


def _circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in edges[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in edges:
        if module not in index:
            visit(module)
    return found


@pytest.mark.parametrize("package", ["datastore", "datamodel", "nimbus"])
def test_no_package_has_an_import_circle(package: str) -> None:
    assert _circles(_import_edges(package)) == []
