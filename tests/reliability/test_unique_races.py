"""Processes racing to create the same object, or to take the same unique value, on stores
every process opens (a SQLite file, a Redis server): exactly one wins, every loser gets the
winner (get_or_create) or IntegrityError (create), and KV and the metadata agree."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from datamodel import Connection, DataModel, IntegrityError, create_tables, fields
from tests.reliability.test_concurrency import connect

RACERS = 6


class Account(DataModel):
    """An email unique among accounts."""

    email = fields.String(required=True, unique=True)
    racer = fields.String()

    class Meta:
        name = "RACEACCOUNT"
        namespace = "NIMBUS_USERS"
        table = "race_account_meta"
        sync_fields = ["racer"]
        user_tracking = False
        auth = False


def _get_or_create(name: str, tmp_path: str, racer: str, start, results) -> None:
    connection = connect(name, Path(tmp_path), fresh=False)
    accounts = Account.objects.system(using=connection)
    start.wait(timeout=30)
    account, created = accounts.get_or_create(email="race@example.com", defaults={"racer": racer})
    results.put((racer, account.pk, created))


def _create(name: str, tmp_path: str, racer: str, start, results) -> None:
    connection = connect(name, Path(tmp_path), fresh=False)
    accounts = Account.objects.system(using=connection)
    start.wait(timeout=30)
    try:
        account = accounts.create(email="same@example.com", racer=racer)
    except IntegrityError as taken:
        results.put((racer, taken.holder, False))
    else:
        results.put((racer, account.kv_id, True))


def race(name: str, tmp_path: Path, target) -> tuple[Connection, list[tuple[str, str, bool]]]:
    connection = connect(name, tmp_path)
    create_tables(connection.sql, [Account])
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(RACERS), context.Queue()
    racers = [
        context.Process(target=target, args=(name, str(tmp_path), f"r{n}", start, results))
        for n in range(RACERS)
    ]
    for racer in racers:
        racer.start()
    outcomes = [results.get(timeout=120) for _ in racers]
    for racer in racers:
        racer.join(timeout=60)
    assert [racer.exitcode for racer in racers] == [0] * RACERS
    return connection, outcomes


def only_one_stored(connection: Connection) -> str:
    accounts = Account.objects.system(using=connection)
    stored = list(accounts.query().values_list("pk", "racer"))
    assert len(stored) == 1
    scanned = [
        object_id
        for batch in connection.datastore.system().scan("RACEACCOUNT")
        for object_id in batch
    ]
    assert scanned == [stored[0][0]]  # KV holds exactly the object the metadata lists
    return stored[0][0]


@pytest.mark.parametrize("name", ["sqlite", "redis"])
def test_racing_get_or_create_makes_exactly_one_object(name: str, tmp_path) -> None:
    connection, outcomes = race(name, tmp_path, _get_or_create)
    winner = only_one_stored(connection)
    assert sorted(created for _, _, created in outcomes) == [False] * (RACERS - 1) + [True]
    assert {pk for _, pk, _ in outcomes} == {winner}  # every loser read the winner


@pytest.mark.parametrize("name", ["sqlite", "redis"])
def test_racing_creates_of_one_unique_value_store_exactly_one(name: str, tmp_path) -> None:
    connection, outcomes = race(name, tmp_path, _create)
    winner = only_one_stored(connection)
    assert sorted(created for _, _, created in outcomes) == [False] * (RACERS - 1) + [True]
    assert {holder for _, holder, _ in outcomes} == {winner}  # each loser was told who holds it
