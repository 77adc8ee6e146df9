"""Unique values, enforced in KV by reservations written in the same atomic batch as the object."""

from __future__ import annotations

import re

import pytest

from datamodel import Connection, DataModel, IntegrityError, create_tables, fields
from datastore.keys import reservation_prefix


class ClubMember(DataModel):
    """A unique email kept by deleted members; a unique nickname released on soft delete."""

    email = fields.String(required=True, unique=True)
    nickname = fields.String(unique=True, release_on_delete=True)
    team = fields.String()
    seat = fields.Integer()

    class Meta:
        name = "CLUBMEMBER"
        namespace = "NIMBUS_USERS"
        table = "club_member_meta"
        unique_together = [("team", "seat")]


class Badge(DataModel):
    """No soft delete: deleting removes the object and its reservations."""

    code = fields.String(required=True, unique=True)
    holder = fields.String()

    class Meta:
        name = "BADGE"
        namespace = "NIMBUS_USERS"
        table = "badge_meta"
        soft_delete = False


@pytest.fixture
def members(connection: Connection):
    create_tables(connection.sql, [ClubMember])
    return ClubMember.objects.auth("u1", using=connection)


def cas(connection: Connection) -> bool:
    kv = connection.datastore.kv
    return kv is None or kv.supports_cas


def test_a_duplicate_is_refused_naming_field_and_value_and_writes_nothing(
    members, connection: Connection
) -> None:
    first = members.create(email="a@example.com")
    with pytest.raises(
        IntegrityError, match=re.escape("email='a@example.com' is already taken")
    ) as taken:
        members.create(email="a@example.com", team="t")
    assert taken.value.fields == ("email",) and taken.value.holder == first.kv_id
    assert members.count() == 1
    assert members.filter(team="t").count() == 0


def test_a_value_is_unique_across_users_without_revealing_the_holder(
    members, connection: Connection
) -> None:
    members.create(email="a@example.com")
    other = ClubMember.objects.auth("u2", using=connection)
    with pytest.raises(IntegrityError, match=r"is already taken$") as taken:
        other.create(email="a@example.com")
    assert taken.value.holder is None  # u2 cannot see whose it is
    assert other.count() == 0


def test_unique_together_and_nulls(members) -> None:
    members.create(email="a@example.com", team="red", seat=1)
    members.create(email="b@example.com", team="red", seat=2)
    members.create(email="c@example.com", team="red")  # a NULL reserves nothing
    members.create(email="d@example.com", team="red")
    with pytest.raises(IntegrityError, match=r"\(team, seat\)=\('red', 1\)"):
        members.create(email="e@example.com", team="red", seat=1)


def test_a_changed_value_moves_its_reservation(members) -> None:
    member = members.create(email="a@example.com")
    member.set("email", "b@example.com")
    member.save()
    members.create(email="a@example.com")  # released by the move
    with pytest.raises(IntegrityError):
        members.create(email="b@example.com")


def test_a_refused_update_leaves_the_object_as_it_was(members) -> None:
    members.create(email="a@example.com")
    member = members.create(email="b@example.com")
    member.set("email", "a@example.com")
    with pytest.raises(IntegrityError):
        member.save()
    stored = members.get(member.pk)
    assert stored.get("email") == "b@example.com" and stored.get("_version") == 1
    assert member.get("_version") == 1
    member.set("email", "c@example.com")
    member.save()  # the instance can still be saved
    assert members.get(member.pk).get("email") == "c@example.com"


def test_soft_deleted_objects_keep_their_values_unless_the_field_releases(members) -> None:
    member = members.create(email="a@example.com", nickname="ace")
    member.delete()
    with pytest.raises(IntegrityError, match="email"):
        members.create(email="a@example.com")
    members.create(email="other@example.com", nickname="ace")  # released on delete
    with pytest.raises(IntegrityError, match="nickname='ace'"):
        member.restore()  # its nickname is someone else's now
    assert members.get(member.pk, include_deleted=True).get("deleted_at") is not None


def test_a_hard_delete_releases_everything(connection: Connection) -> None:
    create_tables(connection.sql, [Badge])
    badges = Badge.objects.auth("u1", using=connection)
    badge = badges.create(code="gold", holder="a")
    badge.delete()
    badges.create(code="gold", holder="b")
    kv = connection.datastore.kv
    if kv is not None:
        namespace = connection.datastore.namespace_for("BADGE")
        keys = kv.list(namespace, reservation_prefix("BADGE")).keys
        assert len(keys) == 1  # the new badge's code, nothing left behind


def test_bulk_create_refuses_two_objects_claiming_one_value(members) -> None:
    with pytest.raises(IntegrityError, match=re.escape("email='x@example.com'")):
        members.bulk_create([{"email": "x@example.com"}, {"email": "x@example.com"}])
    assert members.count() == 0
    members.bulk_create([{"email": f"{i}@example.com"} for i in range(5)])
    with pytest.raises(IntegrityError, match=re.escape("email='3@example.com'")):
        members.bulk_create([{"email": "new@example.com"}, {"email": "3@example.com"}])
    assert members.count() == 5


def test_query_update_cannot_give_two_objects_one_value(members) -> None:
    members.bulk_create([{"email": f"{i}@example.com", "team": "t"} for i in range(3)])
    with pytest.raises(IntegrityError):
        members.filter(team="t").update(seat=1)
    assert members.filter(seat=1).count() == 0


def test_get_or_create_by_a_unique_value(members) -> None:
    member, created = members.get_or_create(email="a@example.com", defaults={"team": "t"})
    assert created
    again, created = members.get_or_create(email="a@example.com", defaults={"team": "u"})
    assert not created and again.pk == member.pk and again.get("team") == "t"


def test_a_save_with_reservations_is_still_one_kv_round_trip(
    members, connection: Connection
) -> None:
    if connection.datastore.adapter.name == "sql":
        pytest.skip("the SQL adapter counts KV and metadata on one counter")
    kv = connection.datastore.round_trips
    # Cloudflare KV reads the claims first; over REST it deletes released values in a second
    # request, the gateway writes and deletes in one.
    gateway = connection.datastore.kv.backend_name == "gateway"  # type: ignore[union-attr]
    create, move, release = (1, 1, 1) if cas(connection) else (2, 2, 1) if gateway else (2, 3, 2)
    with kv.track() as trips:
        member = members.create(email="a@example.com", nickname="n", team="t", seat=1)
    assert trips.count == create
    member.set("email", "b@example.com")
    with kv.track() as trips:
        member.save()
    assert trips.count == move
    member.set("nickname", None)  # a release alone
    with kv.track() as trips:
        member.save()
    assert trips.count == release
