"""End to end in headless Chromium against a live server: sign in as a Nimbus admin with
email and password, open a change
list, filter, search, page, open a detail page. A screenshot is kept in test-artifacts/."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.nimbus.browse.test_admin import seed_pages
from tests.support import require_service

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium_page() -> Iterator[Any]:
    """A page in headless Chromium. Started after any ORM work: Playwright's sync API runs an
    event loop in this thread, and Django refuses ORM calls next to one."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_service("Playwright", "pip install -r requirements-dev.txt")
    if not Path(CHROMIUM).exists():
        require_service("Chromium", "install Debian's chromium package (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(15_000)
        yield page
        browser.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("domain")
def test_an_admin_browses_pages_in_chromium(live_server, make_user) -> None:
    make_user("op@example.com", "correct-horse-battery", is_admin=True)
    seed_pages(30)
    with chromium_page() as page:
        browse(page, live_server.url)


def browse(page: Any, base_url: str) -> None:
    page.goto(f"{base_url}/admin/login/?next=/admin/")
    page.fill("#id_username", "op@example.com")
    page.fill("#id_password", "correct-horse-battery")
    page.click("input[type=submit]")
    page.wait_for_selector("text=Nimbus data")

    page.click("text=Pages")
    page.wait_for_selector("#result_list")
    assert page.inner_text("#result-total") == "30"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "admin-changelist.png"), full_page=True)

    page.click("#changelist-filter >> text=queued")
    page.wait_for_url("**status=queued**")
    assert page.inner_text("#result-total") == "8"

    page.click("#changelist-filter >> text=All")
    page.fill("#changelist-search input[name=q]", "rolex")
    page.press("#changelist-search input[name=q]", "Enter")
    page.wait_for_url("**q=rolex**")
    assert page.inner_text("#result-total") == "10"

    page.fill("#changelist-search input[name=q]", "")
    page.press("#changelist-search input[name=q]", "Enter")
    page.wait_for_selector("#next-page")
    page.click("#next-page")
    page.wait_for_url("**p=2**")
    assert "Page 2 of 2" in page.inner_text(".paginator")

    page.click("#result_list tbody tr th a")
    page.wait_for_selector("#kv-object")
    assert "The metadata row matches the KV object." in page.inner_text("#drift")
    assert "NIMBUS_PAGES" in page.inner_text("#kv-object")
    assert "page_meta" in page.inner_text("#metadata-row")
    page.screenshot(path=str(ARTIFACTS / "admin-detail.png"), full_page=True)
