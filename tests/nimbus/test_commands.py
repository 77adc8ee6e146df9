"""nimbus_initialize, nimbus_sync, system checks and the HTTP system.initialize."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from io import StringIO

import pytest
from django.contrib.auth.hashers import check_password
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError

from datamodel import DataModel, fields
from nimbus import conf
from nimbus.models import User
from tests.datamodel.models import Member, redeclare_member, restore_member
from tests.nimbus.conftest import ADMIN_EMAIL, PASSWORD, signed_in


def run(*args: str, **options) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def run_failing(*args: str) -> tuple[CommandError, str, str]:
    """A command expected to fail: its error, and what it printed before."""
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as info:
        call_command(*args, stdout=out, stderr=err)
    return info.value, out.getvalue(), err.getvalue()


@pytest.fixture
def member() -> Iterator[Callable[..., type[DataModel]]]:
    """``member(meta, **fields)``: another version of the tests' MEMBER model."""
    yield redeclare_member
    restore_member()


def test_initialize_is_idempotent_and_says_so() -> None:
    first = run("nimbus_initialize", "--model", "USER")
    assert "created table user_meta" in first and "Initialized" in first
    second = run("nimbus_initialize", "--model", "USER")
    assert "No changes: the database is up to date." in second
    log = conf.sql_database().execute("SELECT model, change FROM _nimbus_migrations")
    assert {"model": "USER", "change": "create_table"} in log


def test_initialize_json_report() -> None:
    report = json.loads(run("nimbus_initialize", "--model", "USER", "--json"))
    assert set(report) >= {
        "tablesCreated",
        "columnsAdded",
        "indexesCreated",
        "seedsRun",
        "warnings",
        "duration",
    }
    assert report["tablesCreated"] == ["user_meta"]


def test_dry_run_prints_sql_and_changes_nothing() -> None:
    output = run("nimbus_initialize", "--model", "USER", "--dry-run")
    assert 'CREATE TABLE IF NOT EXISTS "user_meta"' in output
    assert conf.sql_database().table_info("user_meta") == []


def test_unknown_model_is_a_command_error() -> None:
    with pytest.raises(CommandError, match=r"no model named 'NOPE'.*known models"):
        run("nimbus_initialize", "--model", "nope")


def test_admin_user_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_EMAIL", "Admin@Example.com")
    monkeypatch.setenv("ADMIN_PASSWORD", "s3cret-pass")
    run("nimbus_initialize", "--model", "USER")
    rows = conf.sql_database().execute("SELECT user_id, email, is_admin FROM user_meta")
    assert len(rows) == 1 and rows[0]["email"] == "admin@example.com" and rows[0]["is_admin"] == 1
    admin = User.objects.system().get(rows[0]["user_id"])
    assert admin.get("password_hash").startswith("pbkdf2_sha256$")
    assert "s3cret-pass" not in json.dumps(admin.get_data())
    assert check_password("s3cret-pass", admin.get("password_hash"))
    run("nimbus_initialize", "--model", "USER")  # if_missing: not seeded twice
    assert conf.sql_database().execute("SELECT count(*) AS n FROM user_meta") == [{"n": 1}]
    monkeypatch.delenv("ADMIN_PASSWORD")
    monkeypatch.setenv("ADMIN_EMAIL", "other@example.com")
    with pytest.raises(CommandError, match="ADMIN_PASSWORD is not set"):
        run("nimbus_initialize", "--model", "USER")


def test_nimbus_sync_reports_and_repairs() -> None:
    run("nimbus_initialize", "--model", "USER")
    users = User.objects.system()
    users.create(email="a@example.com")
    user = users.create(email="b@example.com")
    conf.sql_database().execute("DELETE FROM user_meta WHERE user_id = ?", [user.pk])
    report = run("nimbus_sync", "--model", "USER")
    assert "USER: 2 checked, 1 missing, 0 stale, 0 orphan" in report
    with pytest.raises(CommandError, match="1 rows drifted") as info:
        run("nimbus_sync", "--model", "USER", "--check")
    assert info.value.returncode == 1
    repaired = json.loads(run("nimbus_sync", "--model", "USER", "--repair", "--json"))
    assert repaired["models"][0]["repaired"] == 1
    assert "0 missing" in run("nimbus_sync", "--model", "USER")


def test_system_checks(settings) -> None:
    call_command("check")
    settings.NIMBUS = {"KV": {"BACKEND": "datastore.backends.memory.MemoryKVStore"}}
    with pytest.raises(SystemCheckError, match=r"nimbus\.E001"):
        call_command("check")
    settings.NIMBUS = {
        "KV": {
            "BACKEND": "datastore.backends.cloudflare.CloudflareKVStore",
            "OPTIONS": {"account_id": "a", "api_token": "t", "namespaces": {"PAGES": "x"}},
        },
        "D1": {"BACKEND": "datastore.backends.memory.MemorySQLDatabase"},
        "NAMESPACES": {"USER": "NIMBUS_ELSEWHERE"},
    }
    with pytest.raises(SystemCheckError) as info:
        call_command("check")
    assert "nimbus.E003" in str(info.value) and "NIMBUS_USERS" in str(info.value)
    assert "nimbus.E005" in str(info.value)


@pytest.mark.django_db
@pytest.mark.usefixtures("fast_passwords")
def test_initialize_over_http(client) -> None:
    assert client.post("/api/system/initialize/").status_code == 401
    run("nimbus_initialize", "--model", "USER", "--model", "EMAIL")  # the users, to sign in
    for email, is_admin in [("plain@example.com", False), (ADMIN_EMAIL, True)]:
        user = User.objects.system().new(email=email, is_admin=is_admin)
        user.set_password(PASSWORD)
        user.save()
    plain, admin = signed_in("plain@example.com"), signed_in(ADMIN_EMAIL)
    assert plain.post("/api/system/initialize/").status_code == 403
    response = admin.post(
        "/api/system/initialize/", {"dry_run": True}, content_type="application/json"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["data"]["dryRun"] is True
    assert "project_meta" in body["data"]["tablesCreated"]
    applied = admin.post("/api/system/initialize/").json()["data"]
    assert "project_meta" in applied["tablesCreated"]
    assert conf.sql_database().table_info("project_meta")


def test_backup_and_restore_commands(tmp_path, settings) -> None:
    run("nimbus_initialize", "--model", "USER")
    User.objects.system().create(email="a@example.com")
    path = str(tmp_path / "nimbus.jsonl.gz")
    # the user and the reservation of its email
    assert "Backed up 2 KV keys" in run("nimbus_backup", path)
    with pytest.raises(CommandError, match="already holds data"):
        run("nimbus_restore", path)
    settings.NIMBUS = {  # a fresh, empty target
        "KV": {"BACKEND": "datastore.backends.memory.MemoryKVStore"},
        "D1": {"BACKEND": "datastore.backends.memory.MemorySQLDatabase"},
    }
    report = json.loads(run("nimbus_restore", path, "--json"))
    assert report["kv_keys"] == 2 and report["metadata_rows_rebuilt"] == 1
    assert conf.sql_database().execute("SELECT email FROM user_meta") == [
        {"email": "a@example.com"}
    ]


@pytest.mark.usefixtures("domain")
def test_create_key_prints_a_working_secret(client) -> None:
    with pytest.raises(CommandError, match=r"no user has the email 'ops@example\.com'"):
        run("nimbus_create_key", "ops@example.com")
    secret = run(
        "nimbus_create_key", "Ops@Example.com", "--create-user", "--rate-limit", "5000"
    ).strip()
    assert secret.startswith("sk_live_") and len(secret) == 40
    response = client.get("/api/me/", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 200
    assert response.json()["email"] == "ops@example.com"
    assert response.json()["key"]["rate_limit"] == 5000

    report = json.loads(run("nimbus_create_key", "ops@example.com", "--json", "--name", "worker"))
    assert report["user_id"] == response.json()["user_id"] and report["key"] != secret
    users = conf.sql_database().execute("SELECT email FROM user_meta")
    assert users == [{"email": "ops@example.com"}]  # the second key reused the user


@pytest.mark.usefixtures("domain")
def test_create_key_refuses_admin_keys_for_non_admins_and_bad_limits() -> None:
    run("nimbus_create_key", "dev@example.com", "--create-user")
    with pytest.raises(CommandError, match="not an administrator"):
        run("nimbus_create_key", "dev@example.com", "--permission", "admin")
    with pytest.raises(CommandError, match="--rate-limit must be a positive"):
        run("nimbus_create_key", "dev@example.com", "--rate-limit", "0")
    keys = conf.sql_database().execute("SELECT key_hash FROM apikey_meta")
    assert len(keys) == 1


def test_initialize_backfills_new_sync_fields_and_refuses_unique_indexes_over_duplicates(
    member,
) -> None:
    before = member()
    run("nimbus_initialize", "--model", "MEMBER")
    members = before.objects.auth("u1")
    twins = sorted(members.create(team_id="t", email="a@e.com").pk for _ in range(2))
    members.create(team_id="t", email="b@e.com", handle="bee")

    member(email=fields.String(unique=True))
    preview = run("nimbus_initialize", "--model", "MEMBER", "--dry-run")
    assert "would backfill member_meta (email) from 3 KV objects" in preview
    error, out, _ = run_failing("nimbus_initialize", "--model", "MEMBER")
    assert "backfilling MEMBER: 3 objects" in out
    assert "backfilled member_meta (email) from 3 KV objects" in out
    assert "Refused unique index member_meta__uniq__email on member_meta (email)" in out
    assert f"email='a@e.com': {twins[0]}, {twins[1]}" in out
    assert "run `manage.py nimbus_initialize` again" in out
    assert error.returncode == 1 and "member_meta__uniq__email" in str(error)

    member({"sync_fields": ["handle"]}, email=fields.String(unique=True))
    preview_error, _, _ = run_failing("nimbus_initialize", "--model", "MEMBER", "--dry-run")
    assert preview_error.returncode == 1  # the email column is there: checked in a dry run too
    error, out, _ = run_failing("nimbus_initialize", "--model", "MEMBER", "--json")
    report = json.loads(out)  # the report on stdout, then the error
    assert report["columnsAdded"] == [{"table": "member_meta", "column": "handle"}]
    assert report["backfills"] == [
        {
            "model": "MEMBER",
            "table": "member_meta",
            "columns": ["handle"],
            "objects": 3,
            "progress": [3],
        }
    ]
    [refused] = report["refused"]
    assert refused["groups"] == [{"values": {"email": "a@e.com"}, "ids": twins, "count": 2}]
    rows = conf.sql_database().execute("SELECT handle FROM member_meta WHERE handle = 'bee'")
    assert rows == [{"handle": "bee"}]  # the other changes were applied


def test_nimbus_sync_lists_duplicates_and_repair_leaves_them_to_decide() -> None:
    run("nimbus_initialize", "--model", "MEMBER")
    ann = Member.objects.auth("u1").create(team_id="t", email="a@e.com")
    twin = {**ann.get_data(), "member_id": "twin"}  # slipped past the constraint, into KV
    conf.get_connection().datastore.system().put("MEMBER", "twin", twin)
    ids = ", ".join(sorted([ann.pk, "twin"]))

    report = run("nimbus_sync", "--model", "MEMBER")
    assert "MEMBER: 2 checked, 0 missing, 0 stale, 0 orphan, 1 duplicated (not repairable)" in (
        report
    )
    assert f"duplicate email='a@e.com': {ids}" in report
    assert "decide which object keeps each value" in report

    error, out, _ = run_failing("nimbus_sync", "--model", "MEMBER", "--repair")
    assert "0 repaired" in out and error.returncode == 1
    assert "1 values of unique constraints are held by more than one object" in str(error)
    error, out, _ = run_failing("nimbus_sync", "--model", "MEMBER", "--check", "--json")
    [model] = json.loads(out)["models"]
    assert model["duplicates"] == 1 and model["duplicate_values"][0]["ids"] == sorted(
        [ann.pk, "twin"]
    )
    assert conf.sql_database().execute("SELECT member_id FROM member_meta") == [
        {"member_id": ann.pk}
    ]


@pytest.mark.django_db
def test_initialize_over_http_is_unsuccessful_when_it_refuses_an_index(
    nimbus_admin_client, member
) -> None:
    before = member({"sync_fields": ["email"]})
    run("nimbus_initialize", "--model", "MEMBER")
    for _ in range(2):
        before.objects.auth("u1").create(team_id="t", email="a@e.com")
    member(email=fields.String(unique=True))
    body = nimbus_admin_client.post("/api/system/initialize/").json()
    assert body["success"] is False
    assert [refused["index"] for refused in body["data"]["refused"]] == ["member_meta__uniq__email"]


def _migration_log() -> list[tuple]:
    rows = conf.sql_database().execute(
        'SELECT model, "table", change, detail, schema_hash FROM _nimbus_migrations ORDER BY id'
    )
    return [tuple(row.values()) for row in rows]


def test_restore_merge_overwrite_does_not_duplicate_the_migration_log(tmp_path, settings) -> None:
    run("nimbus_initialize")
    User.objects.system().create(email="a@example.com")
    source_log = _migration_log()
    path = str(tmp_path / "nimbus.jsonl.gz")
    run("nimbus_backup", path)
    settings.NIMBUS = {  # a new SQL database beside a KV store already in use
        "KV": {"BACKEND": "datastore.backends.memory.MemoryKVStore"},
        "D1": {"BACKEND": "datastore.backends.memory.MemorySQLDatabase"},
    }
    conf.kv_store().put("NIMBUS_CACHE", "cache:content:home", b"1")
    run("nimbus_restore", path, "--merge", "overwrite")
    assert sorted(_migration_log()) == sorted(source_log)
    run("nimbus_restore", path, "--merge", "overwrite")  # idempotent
    run("nimbus_restore", path, "--merge", "skip")
    assert sorted(_migration_log()) == sorted(source_log)
    assert conf.sql_database().execute("SELECT email FROM user_meta") == [
        {"email": "a@example.com"}
    ]


def test_restore_reports_and_checks_the_backup_sha256(tmp_path, settings) -> None:
    import gzip

    run("nimbus_initialize", "--model", "USER")
    User.objects.system().create(email="a@example.com")
    path = tmp_path / "nimbus.jsonl.gz"
    made = json.loads(run("nimbus_backup", str(path), "--json"))
    assert len(made["sha256"]) == 64
    restored = json.loads(run("nimbus_restore", str(path), "--merge", "overwrite", "--json"))
    assert restored["sha256"] == made["sha256"]
    assert f"sha256 {made['sha256'][:16]}" in run(
        "nimbus_restore", str(path), "--merge", "overwrite", "--sha256", made["sha256"]
    )
    error, _, _ = run_failing("nimbus_restore", str(path), "--merge", "skip", "--sha256", "0" * 64)
    assert "checksum mismatch" in str(error) and made["sha256"] in str(error)
    lines = gzip.decompress(path.read_bytes()).splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"k":"', b'"k":"x', 1)
    damaged = tmp_path / "damaged.jsonl.gz"
    damaged.write_bytes(gzip.compress(b"".join(lines)))
    error, _, _ = run_failing("nimbus_restore", str(damaged), "--merge", "overwrite")
    assert "checksum mismatch" in str(error) and "nothing was restored" in str(error)


@pytest.mark.usefixtures("domain")
def test_two_users_cannot_share_an_email() -> None:
    from datamodel import IntegrityError

    users = User.objects.system()
    users.create(email="same@example.com")
    with pytest.raises(IntegrityError, match=r"email='same@example\.com' is already taken"):
        users.create(email="same@example.com")
    run("nimbus_create_key", "same@example.com", "--create-user")  # reuses that user
    assert users.filter(email="same@example.com").count() == 1
