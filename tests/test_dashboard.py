"""The admin's Cache dashboard (``freshcache.admin``, ``dashboard/``), seen in a real browser:
headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by Selenium against the
live server, after real requests and writes. Also who may see it, and its JSON feed.

``FRESHCACHE_DASHBOARD_SCREENSHOT=docs/images/dashboard.png`` keeps the screenshot (the one in
docs/observability.md comes from this test).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.contrib.auth.models import Permission, User
from django.test import Client, override_settings

from freshcache import invalidate, journal

pytestmark = pytest.mark.django_db(transaction=True)

DASHBOARD = "/admin/freshcache/journalcounter/"
SETTINGS = {"STORE": "memory://", "HEADER": True}


def _browser_or_skip() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    why = "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
    if os.environ.get("CI") == "true":
        pytest.fail(why + "; CI never skips these tests")
    pytest.skip(why)


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium, driver_path = _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1300"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _log_in(browser: Any, base: str, username: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(base + "/admin/login/?next=" + DASHBOARD)
    browser.find_element(By.NAME, "username").send_keys(username)
    browser.find_element(By.NAME, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()


def test_the_dashboard_shows_what_the_cache_did_and_updates_live(
    live_server: Any, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with override_settings(FRESHCACHE=SETTINGS):
        journal.reset()
        User.objects.create_superuser("admin", "admin@example.com", "secret-pass-1")
        states = [requests.get(live_server.url + "/t/plain/", timeout=10).headers["X-Freshcache"]
                  for _ in range(4)]  # fmt: skip
        assert [s.split(";")[0] for s in states] == ["miss", "hit", "hit", "hit"]
        invalidate("dashboard:first")
        journal.flush()
        (page,) = [s for s in journal.stats() if s.kind == "page"]

        _log_in(browser, live_server.url, "admin", "secret-pass-1")
        WebDriverWait(browser, 15).until(lambda b: b.find_elements(By.ID, "fc-pages"))
        assert "Cache dashboard" in browser.title
        pages = browser.find_element(By.ID, "fc-pages").text
        assert page.name in pages and "75.0%" in pages, pages
        assert "75%" in browser.find_element(By.ID, "fc-total").text
        assert "dashboard:first" in browser.find_element(By.ID, "fc-recent").text
        assert "dashboard:first" in browser.find_element(By.ID, "fc-tags").text

        # Live: a write and more traffic show up without a reload.
        invalidate("dashboard:live")
        for _ in range(3):
            requests.get(live_server.url + "/t/plain/", timeout=10)
        WebDriverWait(browser, 20).until(
            lambda b: "dashboard:live" in b.find_element(By.ID, "fc-recent").text
        )
        WebDriverWait(browser, 20).until(
            lambda b: b.find_elements(By.CSS_SELECTOR, "#fc-live-bars rect")
        )
        assert "%" in browser.find_element(By.ID, "fc-live-now").text
        shot = tmp_path / "dashboard.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        keep = os.environ.get("FRESHCACHE_DASHBOARD_SCREENSHOT")
        if keep:
            shutil.copyfile(shot, keep)


def test_only_staff_with_the_view_permission_see_it() -> None:
    with override_settings(FRESHCACHE=SETTINGS):
        anonymous = Client().get(DASHBOARD)
        assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
        staff = User.objects.create_user("staff", password="pw-staff-1", is_staff=True)
        client = Client()
        client.force_login(staff)
        assert client.get(DASHBOARD).status_code == 403
        assert client.get(DASHBOARD + "data/").status_code == 403
        staff.user_permissions.add(Permission.objects.get(codename="view_journalcounter"))
        allowed = Client()
        allowed.force_login(User.objects.get(pk=staff.pk))
        page = allowed.get(DASHBOARD)
        assert page.status_code == 200 and b"Most invalidated tags" in page.content
        feed = allowed.get(DASHBOARD + "data/").json()
        assert set(feed) == {"html", "at", "hits", "requests"} and "fc-recent" in feed["html"]
        # Read-only: nothing to add, change or delete.
        assert allowed.get(DASHBOARD + "add/").status_code == 403


def test_a_store_that_is_down_shows_an_error_not_a_500() -> None:
    down = "redis://127.0.0.1:1/0?socket_timeout=0.05&connect_timeout=0.05"
    with override_settings(FRESHCACHE={"STORE": down}):
        admin = User.objects.create_superuser("root", "root@example.com", "pw-root-1")
        client = Client()
        client.force_login(admin)
        page = client.get(DASHBOARD)
        assert page.status_code == 200
        assert b"the journal cannot be read" in page.content
