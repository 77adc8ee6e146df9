"""One account system: Nimbus users sign in to the admin and the browsable API with their email
and password; ``is_admin`` (and nothing else) makes them staff and a Nimbus admin."""

from __future__ import annotations

from collections.abc import Callable
from io import StringIO
from types import SimpleNamespace
from unittest import mock

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from nimbus.accounts.models import Account
from nimbus.models import User
from tests.nimbus.conftest import ADMIN_EMAIL, PASSWORD, signed_in
from tests.nimbus.factories import ProjectFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("domain", "fast_passwords")]

MakeUser = Callable[..., User]


def admin_sign_in(client: Client, email: str, password: str = PASSWORD) -> Client:
    """Post the admin's login form; the response is on ``client.last``."""
    client.last = client.post(  # type: ignore[attr-defined]
        "/admin/login/?next=/admin/", {"username": email, "password": password}
    )
    return client


def test_a_seeded_admin_signs_in_to_the_admin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_EMAIL", "Ops@Example.com")
    monkeypatch.setenv("ADMIN_PASSWORD", PASSWORD)
    call_command("nimbus_initialize", stdout=StringIO())
    client = admin_sign_in(Client(), " OPS@example.com ", PASSWORD)  # any case, spaces trimmed
    assert client.last.status_code == 302 and client.last.headers["Location"] == "/admin/"
    index = client.get("/admin/")
    assert index.status_code == 200
    html = index.content.decode()
    assert "Nimbus data" in html and "ops@example.com" in html
    assert "Groups" not in html  # permissions come from is_admin alone
    assert client.get("/admin/nimbus_data/user/").status_code == 200
    me = client.get("/api/me/", HTTP_ACCEPT="application/json").json()
    seeded = User.objects.system().filter(email="ops@example.com").with_data().first()
    assert me == {
        "user_id": seeded.pk,
        "email": "ops@example.com",
        "is_admin": True,
        "authenticated_by": "session",
    }


def test_a_wrong_password_or_an_unknown_email_does_not_sign_in(nimbus_admin: User) -> None:
    for email, password in [(ADMIN_EMAIL, "wrong-password"), ("nobody@example.com", PASSWORD)]:
        client = admin_sign_in(Client(), email, password)
        assert client.last.status_code == 200, email  # the form again, with its error
        assert "Please enter the correct email address and password" in client.last.text
        assert client.get("/admin/").status_code == 302


def test_a_user_who_is_not_an_admin_is_refused_by_the_admin(make_user: MakeUser) -> None:
    make_user("ada@example.com")
    refused = admin_sign_in(Client(), "ada@example.com")
    assert refused.last.status_code == 200
    assert "for a staff account" in refused.last.text
    client = signed_in("ada@example.com")  # signed in, for the browsable API
    for url in ["/admin/", "/admin/nimbus_data/user/", "/admin/nimbus_data/project/"]:
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response.headers["Location"]


def test_a_suspended_user_cannot_sign_in(make_user: MakeUser) -> None:
    make_user("sam@example.com", is_admin=True, status="suspended")
    assert not Client().login(username="sam@example.com", password=PASSWORD)
    refused = admin_sign_in(Client(), "sam@example.com")
    assert refused.last.status_code == 200 and refused.get("/admin/").status_code == 302
    api = Client().post("/api-auth/login/", {"username": "sam@example.com", "password": PASSWORD})
    assert api.status_code == 200  # the form again


def test_a_user_suspended_while_signed_in_is_signed_out(nimbus_admin: User) -> None:
    client = signed_in(ADMIN_EMAIL)
    assert client.get("/admin/").status_code == 200
    nimbus_admin.set("status", "suspended")
    nimbus_admin.save()
    assert client.get("/admin/").status_code == 302
    assert client.get("/api/me/", HTTP_ACCEPT="application/json").status_code == 401


def test_losing_admin_ends_admin_access_on_the_next_request(nimbus_admin: User) -> None:
    client = signed_in(ADMIN_EMAIL)
    assert client.post("/api/system/initialize/", {"dry_run": True}).status_code == 200
    nimbus_admin.set("is_admin", False)
    nimbus_admin.save()
    assert client.get("/admin/").status_code == 302
    assert client.post("/api/system/initialize/", {"dry_run": True}).status_code == 403
    assert client.get("/api/me/", HTTP_ACCEPT="application/json").json()["is_admin"] is False


def test_a_password_change_signs_out_the_other_sessions(nimbus_admin: User) -> None:
    here, elsewhere = signed_in(ADMIN_EMAIL), signed_in(ADMIN_EMAIL)
    form = {"old_password": PASSWORD, "new_password1": "short", "new_password2": "short"}
    refused = here.post("/admin/password_change/", form)
    assert refused.status_code == 200 and "This password is too short" in refused.text
    new = "a-new-horse-battery"
    form = {"old_password": PASSWORD, "new_password1": new, "new_password2": new}
    changed = here.post("/admin/password_change/", form)
    assert changed.status_code == 302
    assert here.get("/admin/").status_code == 200  # this session follows the new password
    assert elsewhere.get("/admin/").status_code == 302  # the other one is signed out
    assert User.objects.system().get(nimbus_admin.pk).check_password(new)
    assert signed_in(ADMIN_EMAIL, new).get("/admin/").status_code == 200


def test_django_staff_that_is_not_a_nimbus_admin_is_no_admin_in_the_api() -> None:
    staff = SimpleNamespace(pk=1, email="staff@example.com", is_authenticated=True)
    staff.is_active = staff.is_staff = staff.is_superuser = True
    client = APIClient()
    client.force_authenticate(user=staff)  # any Django user that is not a Nimbus account
    assert client.post("/api/system/initialize/").status_code == 403
    status = client.get("/api/status/", HTTP_ACCEPT="application/json").json()
    assert status == {"healthy": True}  # no backends, namespaces or adapter
    assert client.get("/api/projects/").status_code == 403  # not a Nimbus user at all
    assert client.post("/api/keys/", {"name": "k", "permissions": ["admin"]}).status_code == 403


def test_a_signed_in_user_browses_their_own_projects(make_user: MakeUser) -> None:
    ada = make_user("ada@example.com")
    ProjectFactory.create(owner=ada.pk, name="ada's")
    ProjectFactory.create(owner="someone_else", name="not ada's")
    client = Client()
    login = client.post("/api-auth/login/", {"username": "ada@example.com", "password": PASSWORD})
    assert login.status_code == 302 and login.headers["Location"] == "/api/"  # not a 404
    listed = client.get("/api/projects/", HTTP_ACCEPT="application/json").json()["data"]
    assert [project["name"] for project in listed] == ["ada's"]
    page = client.get("/api/projects/", HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and "ada&#x27;s" in page.text and "not ada" not in page.text
    created = client.post("/api/projects/", {"name": "mine"}, content_type="application/json")
    assert created.status_code == 201 and created.json()["user_id"] == ada.pk
    me = client.get("/api/me/", HTTP_ACCEPT="application/json").json()
    assert me["user_id"] == ada.pk and me["is_admin"] is False
    assert client.post("/api/system/initialize/").status_code == 403


def test_createsuperuser_creates_a_nimbus_admin(monkeypatch: pytest.MonkeyPatch) -> None:
    def create(email: str, password: str) -> None:
        monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", password)
        call_command("createsuperuser", "--noinput", "--email", email, stdout=StringIO())

    with pytest.raises(CommandError, match="This password is too short"):
        create("root@example.com", "short")
    with pytest.raises(CommandError, match="Enter a valid email address"):
        create("not-an-email", PASSWORD)
    create("Root@Example.com", PASSWORD)
    [root] = User.objects.system().filter(email="root@example.com").with_data()
    assert root.get("is_admin") is True and root.check_password(PASSWORD)
    with pytest.raises(CommandError, match="already taken"):
        create("ROOT@example.com", PASSWORD)
    assert admin_sign_in(Client(), "root@example.com").get("/admin/").status_code == 200


def test_changepassword_changes_a_nimbus_users_password(make_user: MakeUser) -> None:
    ada = make_user("ada@example.com")
    typed = iter(["short", "short", "a-new-horse-battery", "a-new-horse-battery"])
    errors = StringIO()
    with mock.patch("getpass.getpass", lambda prompt="": next(typed)):
        call_command("changepassword", "Ada@Example.com", stdout=StringIO(), stderr=errors)
    assert "This password is too short" in errors.getvalue()  # then asked again
    assert User.objects.system().get(ada.pk).check_password("a-new-horse-battery")
    with pytest.raises(CommandError, match="does not exist"):
        call_command("changepassword", "nobody@example.com", stdout=StringIO())


@pytest.mark.django_db(transaction=True)
def test_the_django_database_can_still_be_flushed() -> None:
    # Django's admin log keeps a foreign key to the user model's table, which SQLite checks
    # when the log is emptied: migrate leaves that table there, empty.
    call_command("flush", "--noinput", stdout=StringIO())
    assert Account._meta.db_table in connection.introspection.table_names()
