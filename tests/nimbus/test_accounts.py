"""Users' emails and passwords: validated wherever a user is created or changed (the model
layer, the admin seed, the command line)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher, make_password
from django.core.management import call_command
from django.core.management.base import CommandError

from datamodel import ValidationError
from nimbus import conf
from nimbus.models import User

pytestmark = pytest.mark.usefixtures("domain")

GOOD_PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def fast_passwords(settings) -> None:
    """The default hasher takes a second or more per password; these tests hash many."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def run(*args: str, stdin: str | None = None) -> str:
    out = StringIO()
    extra = {} if stdin is None else {"stdin": StringIO(stdin)}
    call_command(*args, stdout=out, stderr=StringIO(), **extra)
    return out.getvalue()


def emails() -> list[str]:
    return [row["email"] for row in conf.sql_database().execute("SELECT email FROM user_meta")]


def test_the_admin_seed_refuses_a_weak_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_EMAIL", "admin@example.com")
    monkeypatch.setenv("ADMIN_PASSWORD", "short")
    with pytest.raises(
        CommandError, match=r"ADMIN_PASSWORD is refused: This password is too short"
    ):
        run("nimbus_initialize", "--model", "USER")
    monkeypatch.setenv("ADMIN_PASSWORD", "admin@example")  # too like the email
    with pytest.raises(CommandError, match=r"ADMIN_PASSWORD is refused: .*too similar"):
        run("nimbus_initialize", "--model", "USER")
    assert emails() == []
    monkeypatch.setenv("ADMIN_PASSWORD", GOOD_PASSWORD)
    run("nimbus_initialize", "--model", "USER")
    assert emails() == ["admin@example.com"]


def test_the_admin_seed_refuses_an_invalid_email(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_EMAIL", "not-an-email")
    monkeypatch.setenv("ADMIN_PASSWORD", GOOD_PASSWORD)
    with pytest.raises(
        CommandError, match=r"ADMIN_EMAIL 'not-an-email' is refused: Enter a valid email address"
    ):
        run("nimbus_initialize", "--model", "USER")
    assert emails() == []


def test_emails_are_validated_on_create_and_on_change() -> None:
    users = User.objects.system()
    with pytest.raises(ValidationError, match=r"email: Enter a valid email address"):
        users.create(email="not-an-email")
    user = users.create(email="ada@example.com")
    with pytest.raises(ValidationError, match=r"email: Enter a valid email address"):
        user.set("email", "ada@")
    assert emails() == ["ada@example.com"]


def test_set_password_applies_the_validators() -> None:
    user = User.objects.system().create(email="ada.lovelace@example.com")
    for weak, problem in [
        ("short", "too short"),
        ("1234567890123", "entirely numeric"),
        ("password123", "too common"),
        ("ada.lovelace", "too similar to the email"),
    ]:
        with pytest.raises(ValidationError, match=problem) as info:
            user.set_password(weak)
        assert list(info.value.errors) == ["password"]
    assert user.get("password_hash") is None
    user.set_password(GOOD_PASSWORD)
    user.save()
    stored = User.objects.system().get(user.pk)
    assert stored.check_password(GOOD_PASSWORD) and not stored.check_password("wrong")
    assert GOOD_PASSWORD not in str(stored.get_data())


class QuickPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    iterations = 2  # stands for a newer default, quickly


def test_check_password_upgrades_an_old_hash(settings) -> None:
    user = User.objects.system().create(
        email="ada@example.com", password_hash=make_password(GOOD_PASSWORD, hasher="md5")
    )
    settings.PASSWORD_HASHERS = [
        f"{__name__}.QuickPBKDF2PasswordHasher",
        "django.contrib.auth.hashers.MD5PasswordHasher",
    ]
    assert user.check_password(GOOD_PASSWORD)
    upgraded = User.objects.system().get(user.pk).get("password_hash")
    assert upgraded.startswith("pbkdf2_sha256$2$")
    assert User.objects.system().get(user.pk).check_password(GOOD_PASSWORD)


def test_create_key_refuses_an_invalid_email() -> None:
    with pytest.raises(CommandError, match=r"email: Enter a valid email address"):
        run("nimbus_create_key", "not-an-email", "--create-user")
    assert emails() == []


def test_create_key_sets_a_validated_password_from_stdin() -> None:
    with pytest.raises(CommandError, match=r"password: This password is too short"):
        run(
            "nimbus_create_key",
            "ops@example.com",
            "--create-user",
            "--password-stdin",
            stdin="short\n",
        )
    assert emails() == []
    secret = run(
        "nimbus_create_key",
        "ops@example.com",
        "--create-user",
        "--password-stdin",
        stdin=f"{GOOD_PASSWORD}\n",
    ).strip()
    assert secret.startswith("sk_live_")
    [user] = User.objects.system().filter(email="ops@example.com").with_data()
    assert user.check_password(GOOD_PASSWORD)
    with pytest.raises(CommandError, match=r"already has an account.*changepassword"):
        run(
            "nimbus_create_key",
            "ops@example.com",
            "--create-user",
            "--password-stdin",
            stdin="another-good-password\n",
        )
    assert User.objects.system().get(user.pk).check_password(GOOD_PASSWORD)
    with pytest.raises(CommandError, match=r"--password-stdin sets the password of a user"):
        run("nimbus_create_key", "ops@example.com", "--password-stdin", stdin="x\n")
