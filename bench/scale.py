"""The model layer at scale, without Django: ``--rows`` page metadata rows over a few projects
(one holding most of them), the page list queries timed with their query plans, and the memory
of streaming a KV-backed set of pages (``with_data()`` iterator, backup) in fresh processes."""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import random
import re
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datamodel import Connection, Query, create_statements, ids, initialize, registry
from datamodel.backup import backup
from datamodel.query.compiler import Compiler
from datastore import Datastore, Routing, codec
from datastore.backends.sqlite import SQLiteDatabase, SQLiteKVStore
from datastore.routing import DEFAULT_CLASS_NAMESPACES
from nimbus.models import Page, Project

from .common import machine, median_seconds, print_table

ROOT = Path(__file__).resolve().parent.parent
HELP = "page metadata at scale: list/offset/cursor/count/iterator timings, plans, streaming memory"

# What an upload gives a page (nimbus.workflows.upload_batch), and its owner.
UPLOADED = ["page_id", "project_id", "batch_id", "source_path", "status", "priority"]
UPLOADED += ["uploaded", "user_id"]
STATUS_WEIGHTS = {"uploaded": 10, "queued": 20, "processing": 5, "done": 55, "failed": 10}
VERSIONS = {"uploaded": 1, "queued": 1, "processing": 2, "done": 3, "failed": 3}
PROJECTS = 10
OWNERS = 4
PAGE_SIZE = 20
LOAD_CHUNK = 50_000
CREATE_CHUNK = 1_000
START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
SPAN_SECONDS = 180 * 86_400
_INDEX = re.compile(r"USING (?:COVERING )?INDEX (\S+)")
# What the memory probes do with the KV-backed set; "hold" keeps every object (the control).
STREAMS = {
    "iterate": "with_data().iterator()",
    "backup": "backup()",
    "hold": "list(iterator()) (control)",
}


def connect(directory: Path) -> Connection:
    """The model layer on SQLite files in ``directory``: KV objects and metadata tables."""
    routing = Routing(classes={**DEFAULT_CLASS_NAMESPACES, **registry.routes()})
    kv = SQLiteKVStore(directory / "kv.sqlite3")
    return Connection(
        Datastore(kv, routing=routing), SQLiteDatabase(directory / "metadata.sqlite3")
    )


# -- data -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Projects:
    """Project ids (the first holds most rows) and their owners."""

    ids: list[str]
    owners: dict[str, str]

    @classmethod
    def make(cls, rng: random.Random, count: int = PROJECTS) -> Projects:
        users = [f"user_{rng.getrandbits(48):012x}" for _ in range(OWNERS)]
        project_ids = [f"proj_{rng.getrandbits(48):012x}" for _ in range(count)]
        return cls(project_ids, {p: users[n % OWNERS] for n, p in enumerate(project_ids)})

    def weights(self) -> list[float]:
        others = len(self.ids) - 1
        return [60.0, *[40 / others] * others] if others else [1.0]


def page_values(rng: random.Random, projects: Projects, count: int) -> Iterator[dict[str, Any]]:
    """``count`` pages as batch uploads would leave them: batches of 50-2000 pages of one
    project, uploaded together over 180 days, then processed to the five statuses."""
    statuses, weights = list(STATUS_WEIGHTS), list(STATUS_WEIGHTS.values())
    gap = SPAN_SECONDS / max(1, count / 1025)
    moment, made, batch_number = START, 0, 0
    while made < count:
        project = rng.choices(projects.ids, projects.weights())[0]
        owner = projects.owners[project]
        batch_id = ids.batch_id(moment)
        uploaded = codec.isoformat(moment)
        batch_number += 1
        for _ in range(min(rng.randint(50, 2000), count - made)):
            status = rng.choices(statuses, weights)[0]
            path = f"dist/site-{project[-4:]}/b{batch_number}/page-{made}.html"
            updated = uploaded
            if VERSIONS[status] > 1:
                updated = codec.isoformat(moment + dt.timedelta(seconds=rng.randint(5, 7200)))
            deleted = (
                codec.isoformat(moment + dt.timedelta(days=1)) if rng.random() < 0.01 else None
            )
            yield {
                "page_id": ids.page_id(project, path),
                "project_id": project,
                "batch_id": batch_id,
                "source_path": path,
                "status": status,
                "priority": rng.randint(1, 10),
                "uploaded": uploaded,
                "user_id": owner,
                "created_at": uploaded,
                "updated_at": updated,
                "deleted_at": deleted,
                "_auth": json.dumps([owner]),
                "_version": VERSIONS[status],
            }
            made += 1
        moment += dt.timedelta(seconds=max(1, round(rng.expovariate(1 / gap))))


def load_metadata(connection: Connection, path: Path, values: Iterator[dict[str, Any]]) -> int:
    """Create ``page_meta`` without its indexes and bulk-insert the rows straight into the file
    (large transactions); returns the row count. Indexes come afterwards from initialize."""
    connection.sql.execute(create_statements(Page._meta)[0])
    columns = Page._meta.sync_fields
    insert = (
        f"INSERT OR IGNORE INTO page_meta ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' * len(columns))})"
    )
    database = sqlite3.connect(path, isolation_level=None)
    try:
        while chunk := [[row[c] for c in columns] for row in itertools.islice(values, LOAD_CHUNK)]:
            database.execute("BEGIN")
            database.executemany(insert, chunk)
            database.execute("COMMIT")
    finally:
        database.close()
    return int(connection.sql.execute("SELECT count(*) AS n FROM page_meta")[0]["n"])


def extraction(rng: random.Random, number: int) -> dict[str, Any]:
    """An extraction block of the size the upload API sees (about 1.5 KB as JSON)."""
    blocks = [
        {
            "id": f"b{block}",
            "type": "paragraph",
            "content": f"Section {block} of page {number}. " * rng.randint(3, 8),
        }
        for block in range(6)
    ]
    return {
        "engine": "html",
        "main_selector": "main",
        "head": {"title": f"Page {number}", "description": f"About page {number}"},
        "above_fold_blocks": blocks[:2],
        "rest_of_page_blocks": blocks[2:],
    }


def create_kv_set(directory: Path, count: int, seed: int) -> dict[str, Any]:
    """``count`` pages written as the app writes them (bulk_create: KV objects and metadata
    rows), in ``directory``; returns the project, owner and write throughput."""
    directory.mkdir(parents=True, exist_ok=True)
    connection = connect(directory)
    initialize(connection, [Page, Project], seeds=False)
    rng = random.Random(seed)
    projects = Projects.make(rng, count=2)
    project = projects.ids[0]
    Project.objects.system(using=connection).create(  # a page references its project
        project_id=project, name="bench", user_id=projects.owners[project]
    )
    pages = Page.objects.system(using=connection)
    values = page_values(rng, Projects([project], projects.owners), count)
    started = time.perf_counter()
    number = itertools.count()
    while chunk := list(itertools.islice(values, CREATE_CHUNK)):
        items = [
            {**{name: row[name] for name in UPLOADED}, "extraction": extraction(rng, next(number))}
            for row in chunk
        ]
        pages.bulk_create(items)
    seconds = time.perf_counter() - started
    created = pages.query().include_deleted().count()
    connection.datastore.close()
    connection.sql.close()
    return {
        "project_id": project,
        "owner": projects.owners[project],
        "objects": created,
        "create_per_second": round(created / seconds),
    }


# -- queries ----------------------------------------------------------------------------------


def query_plan(query: Query[Any], *, rows: bool = True, total: bool = True) -> list[str]:
    """``EXPLAIN QUERY PLAN`` of the rows select and of the count that ``list()`` runs in the
    same batch (``total``)."""
    lines = [f"rows:  {detail}" for detail in query.explain()] if rows else []
    if total:
        sql, params = Compiler(query).count()  # no public explain for the count
        explained = query.scope.connection.sql.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        lines += [f"total: {row['detail']}" for row in explained]
    return lines


def iterator_plan(query: Query[Any]) -> list[str]:
    """The plans of ``iterator()``'s batches: the first, and one after a cursor."""
    batch = query.limit(Page._meta.max_limit)
    cursor = batch.list().pagination["next_cursor"]
    return query_plan(batch) + (query_plan(batch.after(cursor)) if cursor else [])


def check_indexed(name: str, plan: list[str], table: str) -> None:
    """Fail when the plan reads ``table`` without an index."""
    for line in plan:
        if f"SCAN {table}" in line and "INDEX" not in line:
            raise AssertionError(f"{name}: reads {table} without an index: {line}")


@dataclass
class Measured:
    """One benchmarked query: its median time, what it returned and its query plan."""

    name: str
    seconds: float
    result: str
    plan: list[str]

    @property
    def indexes(self) -> list[str]:
        return sorted({match for line in self.plan for match in _INDEX.findall(line)})

    @property
    def sorts(self) -> bool:
        return any("TEMP B-TREE" in line for line in self.plan)

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.name,
            "ms": round(self.seconds * 1000, 2),
            "result": self.result,
            "indexes": self.indexes,
            "sorts": self.sorts,
            "plan": self.plan,
        }


def measure(
    name: str,
    plan: list[str],
    run: Callable[[], Any],
    describe: Callable[[Any], str],
    repeat: int,
) -> Measured:
    """Check the plan, run once (warm-up and result), then time the median of ``repeat`` runs."""
    check_indexed(name, plan, Page._meta.table)
    result = describe(run())
    return Measured(name, median_seconds(run, repeat), result, plan)


def page_result(page: Any) -> str:
    """``20 of 116399``: the rows of a page and its total."""
    return f"{len(page.data)} of {page.pagination['total']}"


def query_figures(
    connection: Connection, projects: Projects, depth: int, repeat: int
) -> list[Measured]:
    """The page list queries on the big table, system scope unless said otherwise."""
    big, small = projects.ids[0], projects.ids[1]
    system = Page.objects.system(using=connection)
    owner = Page.objects.auth(projects.owners[big], using=connection)
    listing = (
        system.filter(project_id=big, status="queued").order_by("priority", "desc").limit(PAGE_SIZE)
    )
    total = listing.count()
    depth = max(1, min(depth, total * 3 // 4))
    at_depth = listing.offset(depth)
    cursor = listing.limit(1).offset(depth - 1).list().pagination["next_cursor"]
    after = listing.after(cursor)
    if [r["page_id"] for r in after.list().data] != [r["page_id"] for r in at_depth.list().data]:
        raise AssertionError(f"the cursor page after {depth} is not the page at offset {depth}")
    api_listing = owner.filter(project_id=big, status="queued").order_by("priority", "desc")
    api_listing = api_listing.limit(PAGE_SIZE)
    by_project = system.query().where("project_id", big).limit(PAGE_SIZE)
    batch_id = connection.sql.execute(
        "SELECT batch_id FROM page_meta WHERE project_id = ? ORDER BY created_at LIMIT 1",
        [big],
    )[0]["batch_id"]
    by_batch = system.query().where("project_id", big).where("batch_id", batch_id)
    by_batch = by_batch.limit(PAGE_SIZE)
    streamed = system.query().where("project_id", small)
    pages = {
        "status page 1 (-priority)": listing,
        "same, user scope (as the API)": api_listing,
        f"offset {depth:,}": at_depth,
        f"cursor after {depth:,}": after,
    }
    figures = [
        measure(name, query_plan(query), query.list, page_result, repeat)
        for name, query in pages.items()
    ]
    figures.append(
        measure(
            "count (project + status)", query_plan(listing, rows=False), listing.count, str, repeat
        )
    )
    for name, query in {
        "project page 1 (-created_at)": by_project,
        "batch page 1 (oldest batch)": by_batch,
    }.items():
        figures.append(measure(name, query_plan(query), query.list, page_result, repeat))
    # One pass is already an average over hundreds of batches.
    figures.append(
        measure(
            "iterator(), one project",
            iterator_plan(streamed),
            lambda: sum(1 for _ in streamed.iterator(batch_size=500)),
            lambda rows: f"{rows:,} rows",
            1,
        )
    )
    return figures


def kv_figures(directory: Path, project_id: str, repeat: int) -> tuple[Measured, list[str]]:
    """A page of 20 full objects (the metadata query plus one bulk KV read), and the checked
    plan of streaming every object (timed by the memory probes)."""
    connection = connect(directory)
    pages = Page.objects.system(using=connection)
    query = pages.filter(project_id=project_id, status="queued").order_by("priority", "desc")
    query = query.limit(PAGE_SIZE).with_data()
    figure = measure(
        "with_data() page of 20 (KV set)", query_plan(query), query.list, page_result, repeat
    )
    stream_plan = iterator_plan(pages.query().with_data())
    check_indexed("with_data().iterator()", stream_plan, Page._meta.table)
    connection.datastore.close()
    connection.sql.close()
    return figure, stream_plan


# -- memory -----------------------------------------------------------------------------------


def _memory_kib() -> tuple[int, int]:
    """(current RSS, peak RSS) of this process in KiB.

    The peak is the address space's own high-water mark (``VmHWM``): ``ru_maxrss`` also keeps
    the high-water mark of the process that forked this one before ``exec``, so in a child of
    a large process it reports the parent's size."""
    try:
        status = dict(
            line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines()
        )
        return int(status["VmRSS"].split()[0]), int(status["VmHWM"].split()[0])
    except (OSError, KeyError, ValueError):
        peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
        return peak, peak


def memory_probe(operation: str, directory: str) -> None:
    """In a fresh process: stream the KV-backed set in ``directory`` one way (``STREAMS``) and
    print the RSS before and the peak after as JSON."""
    folder = Path(directory)
    connection = connect(folder)
    query = Page.objects.system(using=connection).query().with_data()
    before, _ = _memory_kib()
    started = time.perf_counter()
    if operation == "iterate":
        objects = sum(1 for _ in query.iterator(batch_size=500))
    elif operation == "hold":
        objects = len(list(query.iterator(batch_size=500)))
    elif operation == "backup":
        target = folder / "backup.jsonl.gz"
        objects = backup(connection.datastore.kv, connection.sql, target).kv_keys
        target.unlink()
    else:
        raise ValueError(f"unknown operation {operation!r}")
    seconds = time.perf_counter() - started
    _, peak = _memory_kib()
    print(json.dumps({"objects": objects, "seconds": seconds, "before": before, "peak": peak}))


def measure_memory(operation: str, directory: Path) -> dict[str, Any]:
    """Run ``memory_probe`` in a fresh interpreter, so nothing done before inflates its RSS."""
    code = "import sys, bench.scale as s; s.memory_probe(sys.argv[1], sys.argv[2])"
    done = subprocess.run(
        [sys.executable, "-c", code, operation, str(directory)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"memory probe {operation} failed:\n{done.stderr}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


# -- the run ----------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=1_000_000, help="page metadata rows")
    parser.add_argument(
        "--kv-objects", type=int, default=100_000, help="KV-backed pages (and a fifth of it)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per query (median)")
    parser.add_argument("--depth", type=int, default=50_000, help="rows before the deep page")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--directory", type=Path, help="for the databases (default: temp)")


def print_report(figures: list[Measured], memory: list[dict[str, Any]]) -> None:
    """The query table, every query plan, and the memory table."""
    print()
    print_table(
        ["query", "median ms", "result", "index", "sorts"],
        [
            [
                f.name,
                f"{f.seconds * 1000:,.1f}",
                f.result,
                ", ".join(f.indexes),
                "yes" if f.sorts else "no",
            ]
            for f in figures
        ],
    )
    for figure in figures:
        print(f"\n{figure.name}:\n    " + "\n    ".join(figure.plan))
    print()
    print_table(
        ["stream", "objects", "seconds", "RSS before MiB", "peak MiB", "growth MiB"],
        [
            [
                STREAMS[entry["operation"]],
                f"{entry['objects']:,}",
                f"{entry['seconds']:.1f}",
                f"{entry['before'] / 1024:.1f}",
                f"{entry['peak'] / 1024:.1f}",
                f"{(entry['peak'] - entry['before']) / 1024:.1f}",
            ]
            for entry in memory
        ],
    )


def run(options: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(options.seed)
    projects = Projects.make(rng)
    with tempfile.TemporaryDirectory(prefix="nimbus-scale-", dir=options.directory) as scratch:
        folder = Path(scratch)
        connection = connect(folder / "big")
        started = time.perf_counter()
        rows = load_metadata(
            connection,
            folder / "big" / "metadata.sqlite3",
            page_values(rng, projects, options.rows),
        )
        load_seconds = time.perf_counter() - started
        started = time.perf_counter()
        report = initialize(connection, [Page], seeds=False)
        index_seconds = time.perf_counter() - started
        size_mib = (folder / "big" / "metadata.sqlite3").stat().st_size / 2**20
        indexes = [created["index"] for created in report.indexes_created]
        print(
            f"{rows:,} page_meta rows loaded in {load_seconds:.1f} s; {len(indexes)} indexes "
            f"built in {index_seconds:.1f} s ({', '.join(indexes)}); file {size_mib:,.0f} MiB"
        )
        figures = query_figures(connection, projects, options.depth, options.repeat)
        connection.datastore.close()
        connection.sql.close()

        sizes = sorted({max(1, options.kv_objects // 5), options.kv_objects})
        kv_sets = {}
        for size in sizes:
            kv_sets[size] = create_kv_set(folder / f"kv-{size}", size, options.seed)
            print(f"{size:,} KV-backed pages: {kv_sets[size]['create_per_second']:,} created/s")
        largest = sizes[-1]
        page_figure, stream_plan = kv_figures(
            folder / f"kv-{largest}", kv_sets[largest]["project_id"], options.repeat
        )
        figures.append(page_figure)
        memory = [
            {
                "operation": operation,
                "size": size,
                **measure_memory(operation, folder / f"kv-{size}"),
            }
            for size in sizes
            for operation in STREAMS
        ]
    for entry in memory:
        if entry["objects"] != kv_sets[entry["size"]]["objects"]:
            raise AssertionError(f"{entry['operation']} saw {entry['objects']} of {entry['size']}")
    streamed = next(e for e in memory if e["operation"] == "iterate" and e["size"] == largest)
    name = f"with_data().iterator(), {largest:,} objects"
    figures.append(Measured(name, streamed["seconds"], f"{largest:,} objects", stream_plan))
    print_report(figures, memory)
    return {
        "machine": machine() | {"sqlite": sqlite3.sqlite_version},
        "rows": rows,
        "load_seconds": round(load_seconds, 1),
        "index_seconds": round(index_seconds, 1),
        "metadata_mib": round(size_mib),
        "indexes": indexes,
        "queries": [figure.to_json() for figure in figures],
        "kv_sets": [{"size": size, **kv_sets[size]} for size in sizes],
        "memory": memory,
    }
