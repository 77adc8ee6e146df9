"""The read-only admin over DataModels: index, permissions, change list, detail (SQLite, D1)."""

from __future__ import annotations

import pytest
from django.contrib.auth.hashers import make_password
from django.test import Client

from datamodel import initialize
from nimbus import conf
from nimbus.models import DOMAIN_MODELS, Page, User
from tests.nimbus.conftest import signed_in
from tests.nimbus.factories import PageFactory, ProjectFactory

pytestmark = pytest.mark.django_db

BASE = "/admin/nimbus_data/page/"


def seed_pages(count: int = 30) -> list[Page]:
    project = ProjectFactory.create(owner="alice")
    pages = [
        PageFactory.create(
            owner="alice",
            project_id=project.pk,
            source_path=f"dist/{'rolex' if i % 3 == 0 else 'omega'}-{i:02d}.html",
            status=["uploaded", "queued", "processing", "done"][i % 4],
        )
        for i in range(count)
    ]
    return pages


@pytest.fixture(params=["sqlite", "d1", "gateway"])
def backend(request, settings, tmp_path) -> str:
    """Metadata on local SQLite, or on D1 through the local Cloudflare API or the gateway."""
    if request.param == "sqlite":
        settings.NIMBUS = {
            "KV": {
                "BACKEND": "datastore.backends.sqlite.SQLiteKVStore",
                "OPTIONS": {"path": str(tmp_path / "kv.sqlite3")},
            },
            "D1": {
                "BACKEND": "datastore.backends.sqlite.SQLiteDatabase",
                "OPTIONS": {"path": str(tmp_path / "meta.sqlite3")},
            },
        }
    else:
        cloudflare = request.getfixturevalue("cloudflare_api")
        cloudflare.reset()
        settings.NIMBUS = cloudflare.nimbus_settings("rest" if request.param == "d1" else "gateway")
    initialize(conf.get_connection(), DOMAIN_MODELS, seeds=False)
    return request.param


def test_index_lists_every_datamodel(nimbus_admin_client: Client) -> None:
    html = nimbus_admin_client.get("/admin/").content.decode()
    assert "Nimbus data" in html
    for name in ["Pages", "Projects", "Batches", "API keys", "Page statuses", "Page logs", "Users"]:
        assert name in html, name


def test_only_nimbus_admins_see_nimbus_data(make_user) -> None:
    make_user("ada@example.com")  # signed in, but not an admin
    client = signed_in("ada@example.com")
    assert client.get(BASE).status_code == 302  # to the admin's login page
    assert "/admin/login/" in client.get("/admin/").headers["Location"]
    make_user("root@example.com", is_admin=True)  # is_admin: every model, no permission rows
    admin = signed_in("root@example.com")
    assert admin.get(BASE).status_code == 200
    assert admin.get("/admin/auth/group/").status_code == 404  # groups would grant nothing


@pytest.mark.usefixtures("domain")
def test_read_only(nimbus_admin_client: Client) -> None:
    assert nimbus_admin_client.get(f"{BASE}add/").status_code == 404  # no add view at all
    seed_pages(1)
    row = conf.sql_database().execute("SELECT project_id, page_id FROM page_meta")[0]
    detail = nimbus_admin_client.get(
        f"{BASE}{row['project_id']}:{row['page_id']}/"
    ).content.decode()
    assert "<form" not in detail.split('id="content-main"')[1] or "Save" not in detail


def test_change_list(backend: str, nimbus_admin_client: Client) -> None:
    seed_pages(30)
    page = nimbus_admin_client.get(BASE)
    html = page.content.decode()
    assert page.status_code == 200
    assert '<strong id="result-total">30</strong>' in html
    assert "Page 1 of 2" in html and 'id="next-page"' in html
    for column in ["source_path", "status", "priority", "created_at"]:
        assert f">{column}</a></th>" in html
    queued = nimbus_admin_client.get(f"{BASE}?status=queued").content.decode()
    assert '<strong id="result-total">8</strong>' in queued  # i % 4 == 1 for i < 30
    rolex = nimbus_admin_client.get(f"{BASE}?q=ROLEX").content.decode()
    assert '<strong id="result-total">10</strong>' in rolex
    sorted_page = nimbus_admin_client.get(f"{BASE}?o=-source_path").content.decode()
    assert sorted_page.index("rolex-27") < sorted_page.index("rolex-24")
    second = nimbus_admin_client.get(f"{BASE}?p=2").content.decode()
    assert "Page 2 of 2" in second and 'id="previous-page"' in second


def test_deleted_toggle(backend: str, nimbus_admin_client: Client) -> None:
    pages = seed_pages(3)
    Page.objects.auth("alice").get(pages[0].kv_id).delete()
    assert '<strong id="result-total">2</strong>' in nimbus_admin_client.get(BASE).content.decode()
    both = nimbus_admin_client.get(f"{BASE}?deleted=include").content.decode()
    assert '<strong id="result-total">3</strong>' in both
    only = nimbus_admin_client.get(f"{BASE}?deleted=only").content.decode()
    assert '<strong id="result-total">1</strong>' in only


def test_detail_shows_kv_object_and_row_and_flags_drift(
    backend: str, nimbus_admin_client: Client
) -> None:
    page = seed_pages(1)[0]
    page.set("extraction", {"engine": "html", "big": "x" * 5000})
    page.save()
    url = f"{BASE}{page.kv_id}/"
    html = nimbus_admin_client.get(url).content.decode()
    assert "The metadata row matches the KV object." in html
    assert f"page:{page.kv_id}" in html and "NIMBUS_PAGES" in html
    assert "<details><summary><strong>extraction</strong>" in html  # large field folded
    conf.sql_database().execute(
        "UPDATE page_meta SET status = ? WHERE page_id = ?", ["done", page.pk]
    )
    drifted = nimbus_admin_client.get(url).content.decode()
    assert "the metadata row differs from the KV object" in drifted
    assert 'class="differs"' in drifted
    conf.sql_database().execute("DELETE FROM page_meta WHERE page_id = ?", [page.pk])
    assert "has no metadata row" in nimbus_admin_client.get(url).content.decode()
    assert nimbus_admin_client.get(f"{BASE}proj_x:page_missing/").status_code == 404


def test_an_orphan_row_links_to_a_page_that_says_so(
    backend: str, nimbus_admin_client: Client
) -> None:
    page = seed_pages(1)[0]
    conf.get_connection().datastore.system().delete("PAGE", page.kv_id)  # the row stays
    listing = nimbus_admin_client.get(BASE).content.decode()
    assert f'href="{page.kv_id}/"' in listing  # the row is listed, with its link
    detail = nimbus_admin_client.get(f"{BASE}{page.kv_id}/")
    assert detail.status_code == 200
    html = detail.content.decode()
    assert "this metadata row has no KV object" in html and "nimbus_sync --repair" in html
    assert page.pk in html


@pytest.mark.usefixtures("domain")
def test_a_page_number_past_the_end_shows_the_last_page(nimbus_admin_client: Client) -> None:
    seed_pages(30)
    for number in [str(2**63), "9" * 40, "3", "1000001"]:
        response = nimbus_admin_client.get(f"{BASE}?p={number}")
        assert response.status_code == 200, number
        html = response.content.decode()
        assert "Page 2 of 2" in html and 'id="next-page"' not in html, number
    first = nimbus_admin_client.get(f"{BASE}?p=-{'9' * 40}").content.decode()
    assert "Page 1 of 2" in first
    assert nimbus_admin_client.get(f"{BASE}?p=x").status_code == 404


@pytest.mark.usefixtures("domain")
def test_user_pages_never_show_a_password_hash(nimbus_admin_client: Client) -> None:
    user = User.objects.system().create(
        email="ada@example.com", password_hash=make_password("correct-horse-battery")
    )
    digest = user.get("password_hash")
    secret = digest.rsplit("$", 1)[1]  # the hash itself, without its algorithm and salt
    pages = {
        "list": nimbus_admin_client.get("/admin/nimbus_data/user/"),
        "search": nimbus_admin_client.get("/admin/nimbus_data/user/?q=md5"),
        "detail": nimbus_admin_client.get(f"/admin/nimbus_data/user/{user.pk}/"),
    }
    for name, response in pages.items():
        assert response.status_code == 200, name
        html = response.content.decode()
        assert secret not in html and digest not in html, name
    detail = pages["detail"].content.decode()
    assert "ada@example.com" in detail and "password_hash" in detail
    assert "redacted" in detail and "md5" in detail  # says a hash is set, and of which kind
