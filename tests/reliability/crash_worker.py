"""A process that saves pages as fast as it can and prints ``ACK <id>`` after each save
returns. The crash test kills it with SIGKILL at random moments."""

from __future__ import annotations

import sys

from datamodel import Connection, create_tables
from datastore import Datastore, KVStore
from datastore.backends.redis import RedisKVStore
from datastore.backends.sqlite import SQLiteDatabase, SQLiteKVStore
from tests.datamodel.conftest import routing
from tests.datamodel.models import TEST_MODELS, Page


def main(kind: str, directory: str, prefix: str, redis_url: str) -> None:
    kv: KVStore
    if kind == "redis":
        kv = RedisKVStore(redis_url, key_prefix="nimbus-test:")
    else:
        kv = SQLiteKVStore(f"{directory}/kv.sqlite3")
    sql = SQLiteDatabase(f"{directory}/meta.sqlite3")
    connection = Connection(Datastore(kv, routing=routing()), sql)
    create_tables(sql, TEST_MODELS)
    pages = Page.objects.auth("alice", using=connection)
    number = 0
    while True:
        page_id = f"{prefix}_{number:06d}"
        pages.create(project_id="crash", page_id=page_id, url="https://example.com", tags=["x"])
        sys.stdout.write(f"ACK {page_id}\n")
        sys.stdout.flush()
        number += 1


if __name__ == "__main__":
    main(*sys.argv[1:5])
