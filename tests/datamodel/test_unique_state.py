"""A state machine of two users creating, renaming, deleting and restoring members with
unique values, through create, save, get_or_create and query update: after every step each
value is held by at most one object, every value an object holds has its reservation naming
it, no reservation is left without its object, and every metadata row matches its KV object."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from datamodel import Connection, IntegrityError, create_tables
from datamodel.reservations import held
from datamodel.sync import project_row
from datastore import Datastore
from datastore.keys import reservation_prefix
from tests.datamodel.conftest import routing
from tests.datamodel.models import TEST_MODELS
from tests.datamodel.test_unique import ClubMember

USERS = ["alice", "bob"]
EMAILS = [f"{name}@example.com" for name in ("a", "b", "c")]
NICKS = [None, "ace", "bee"]
users, emails, nicks = st.sampled_from(USERS), st.sampled_from(EMAILS), st.sampled_from(NICKS)
seats = st.one_of(st.none(), st.integers(1, 2))


def stores(kind: str, tmp_path: Any) -> Connection:
    if kind == "memory":
        from datastore.backends.memory import MemoryKVStore, MemorySQLDatabase

        kv: Any = MemoryKVStore()
        sql: Any = MemorySQLDatabase()
    else:
        from datastore.backends.sqlite import SQLiteDatabase, SQLiteKVStore

        kv, sql = SQLiteKVStore(tmp_path / "kv.sqlite3"), SQLiteDatabase(tmp_path / "m.sqlite3")
    create_tables(sql, [*TEST_MODELS, ClubMember])
    return Connection(Datastore(kv, routing=routing()), sql)


class UniqueMembers(RuleBasedStateMachine):
    kind = "memory"
    tmp_path: Any = None

    def __init__(self) -> None:
        super().__init__()
        self.connection = stores(self.kind, self.tmp_path)
        kv = self.connection.datastore.kv
        assert kv is not None
        self.kv = kv
        self.namespace = self.connection.datastore.namespace_for("CLUBMEMBER")
        if self.kind != "memory":  # one file pair per run: start from empty
            self.kv.clear(self.namespace)
            self.connection.sql.execute("DELETE FROM club_member_meta")

    steps = 0  # counted over every run, so the test can tell the rules ran

    def members(self, user: str) -> Any:
        UniqueMembers.steps += 1
        return ClubMember.objects.auth(user, using=self.connection)

    def mine(self, user: str, email: str) -> Any:
        return self.members(user).query().include_deleted().with_data().filter(email=email).first()

    @rule(user=users, email=emails, nickname=nicks, team=st.sampled_from(["t", None]), seat=seats)
    def create(self, user: str, email: str, nickname: str | None, team: Any, seat: Any) -> None:
        with contextlib.suppress(IntegrityError):
            self.members(user).create(email=email, nickname=nickname, team=team, seat=seat)

    @rule(user=users, email=emails, new_email=emails, nickname=nicks, seat=seats)
    def change(self, user: str, email: str, new_email: str, nickname: Any, seat: Any) -> None:
        member = self.mine(user, email)
        if member is None:
            return
        member.set({"email": new_email, "nickname": nickname, "seat": seat, "team": "t"})
        with contextlib.suppress(IntegrityError):
            member.save()

    @rule(user=users, email=emails)
    def delete(self, user: str, email: str) -> None:
        member = self.mine(user, email)
        if member is not None:
            member.delete()

    @rule(user=users, email=emails)
    def restore(self, user: str, email: str) -> None:
        member = self.mine(user, email)
        if member is None:
            return
        with contextlib.suppress(IntegrityError):
            member.restore()

    @rule(user=users, email=emails, team=st.sampled_from(["t", "u"]))
    def get_or_create(self, user: str, email: str, team: str) -> None:
        # Refused when held by someone this user cannot see, or by a deleted member.
        with contextlib.suppress(IntegrityError):
            self.members(user).get_or_create(email=email, defaults={"team": team})

    @rule(user=users, seat=seats)
    def update_seats(self, user: str, seat: Any) -> None:
        with contextlib.suppress(IntegrityError):
            self.members(user).filter(team="t").update(seat=seat)

    @invariant()
    def every_value_has_one_holder_and_nothing_is_left_behind(self) -> None:
        meta = ClubMember._meta
        objects = {
            kv_id: stored.data
            for batch in self.connection.datastore.system().scan("CLUBMEMBER")
            for kv_id, stored in batch.items()
        }
        expected: dict[str, str] = {}
        for kv_id, data in objects.items():
            for name in held(meta, data):
                assert name not in expected, f"{name} held by {expected.get(name)} and {kv_id}"
                expected[name] = kv_id
        owners = self.connection.datastore.system().reservation_owners(
            "CLUBMEMBER",
            [key[len(reservation_prefix("CLUBMEMBER")) :] for key in self.all_reservation_keys()],
        )
        assert owners == expected
        rows = self.connection.sql.execute(
            f"SELECT {', '.join(meta.sync_fields)} FROM club_member_meta ORDER BY id"
        )
        assert len(rows) == len(objects)
        for row in rows:
            assert list(row.values()) == project_row(meta, objects[row["id"]])

    def all_reservation_keys(self) -> list[str]:
        keys: list[str] = []
        cursor = None
        while True:
            page = self.kv.list(self.namespace, reservation_prefix("CLUBMEMBER"), cursor, 1000)
            keys += page.keys
            if page.cursor is None:
                return keys
            cursor = page.cursor


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_unique_values_stay_consistent(kind: str, tmp_path: Any) -> None:
    machine: Any = type(
        f"UniqueMembers_{kind}", (UniqueMembers,), {"kind": kind, "tmp_path": tmp_path}
    )
    machine.TestCase.settings = settings(
        max_examples=25 if kind == "memory" else 10,
        stateful_step_count=20,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    machine.TestCase().runTest()
    assert UniqueMembers.steps > 0
