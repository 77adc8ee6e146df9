"""After any sequence of saves, updates, deletes and restores, every metadata row equals the
projection of its KV object, and every KV object has its row."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datamodel import Connection, create_tables
from datamodel.sync import project_row
from datastore import Datastore
from datastore.backends.memory import MemoryKVStore, MemorySQLDatabase
from tests.datamodel.conftest import routing
from tests.datamodel.models import TEST_MODELS, Page

IDS = [f"page_{i}" for i in range(4)]
values = st.fixed_dictionaries(
    {},
    optional={
        "title": st.one_of(st.none(), st.text(max_size=20)),
        "status": st.sampled_from(["pending", "processing", "completed", "failed"]),
        "priority": st.integers(-5, 5),
        "score": st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)),
        "archived": st.booleans(),
        "tags": st.lists(st.sampled_from(["a", "b", "c"]), max_size=3),
    },
)
operations = st.lists(
    st.tuples(
        st.sampled_from(["save", "delete", "restore"]),
        st.sampled_from(IDS),
        st.sampled_from(["alice", "bob"]),
        values,
    ),
    max_size=25,
)


def check_consistency(connection: Connection) -> None:
    meta = Page._meta
    rows = connection.sql.execute(
        f"SELECT {', '.join(meta.sync_fields)} FROM webpage_meta ORDER BY page_id"
    )
    system = connection.datastore.system()
    objects = system.get_many("WEBPAGE", [f"proj:{page_id}" for page_id in IDS])
    assert len(rows) == len(objects)
    for row in rows:
        stored = objects[f"proj:{row['page_id']}"]
        assert list(row.values()) == project_row(meta, stored)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_metadata_rows_always_match_kv(ops) -> None:
    sql = MemorySQLDatabase()
    connection = Connection(Datastore(MemoryKVStore(), routing=routing()), sql)
    create_tables(sql, TEST_MODELS)
    for operation, page_id, user, changes in ops:
        pages = Page.objects.auth(user, using=connection)
        page = pages.get_or_none(project_id="proj", page_id=page_id, include_deleted=True)
        if operation == "save":
            if page is None:
                if Page.objects.system(using=connection).get_or_none(
                    project_id="proj", page_id=page_id, include_deleted=True
                ):
                    continue  # someone else's id
                page = pages.new(project_id="proj", page_id=page_id, url="https://e.com")
            page.set(changes)
            page.save()
        elif page is not None and operation == "delete":
            page.delete()
        elif page is not None and operation == "restore":
            page.restore()
        check_consistency(connection)
