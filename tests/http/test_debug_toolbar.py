"""The debug-toolbar panel, with the real django-debug-toolbar: what a developer sees in it."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.test import Client, override_settings

from freshcache import events, outcome
from freshcache.capture import trace

toolbar_settings = pytest.importorskip("debug_toolbar.settings")  # [debug-toolbar], in [dev]

PANEL = "FreshcachePanel"


def _show(request: object) -> bool:
    return True


@pytest.fixture
def toolbar(page_store: None) -> Iterator[Client]:
    with override_settings(
        INSTALLED_APPS=[*settings.INSTALLED_APPS, "debug_toolbar"],
        MIDDLEWARE=["debug_toolbar.middleware.DebugToolbarMiddleware", *settings.MIDDLEWARE],
        ROOT_URLCONF="tests.http.toolbar_urls",
        DEBUG_TOOLBAR_PANELS=[
            *toolbar_settings.PANELS_DEFAULTS,  # as docs/observability.md shows
            "freshcache.contrib.debug_toolbar.FreshcachePanel",
        ],
        DEBUG_TOOLBAR_CONFIG={
            "SHOW_TOOLBAR_CALLBACK": "tests.http.test_debug_toolbar._show",
            "IS_RUNNING_TESTS": False,
        },
    ):
        yield Client()
    # Off once no request is traced (the journal may still listen).
    assert outcome._collect not in events._listeners and not trace.tracing


def panel(client: Client, path: str, method: str = "get") -> tuple[str, str]:
    """Request ``path``; return the panel's rendered content, as the toolbar's frontend asks
    for it, and the panel's subtitle in the toolbar."""
    response = getattr(client, method)(path)
    html = response.content.decode()
    request_id = re.search(r'data-request-id="(\w+)"', html)
    assert request_id, html[-2000:]
    rendered = client.get(
        "/__debug__/render_panel/", {"request_id": request_id[1], "panel_id": PANEL}
    )
    assert rendered.status_code == 200
    subtitle = re.search(r'id="djdt-' + PANEL + r'".*?<small>\s*(.*?)\s*</small>', html, re.S)
    return rendered.json()["content"], subtitle[1] if subtitle else ""


def cells(content: str) -> list[list[str]]:
    """The computations table as a developer reads it: one list of cell texts per computation
    (the time cell left out: it varies), and the read rows under it as ``["SQL", tags]``."""
    rows = []
    for cls, row in re.findall(r'<tr( class="freshcache-\w+")?>(.*?)</tr>', content, re.S):
        texts = [
            html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", cell))).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        if cls:
            rows.append(texts[:5] + texts[6:])
        elif len(texts) == 2 and texts[0].startswith("SELECT"):
            rows.append(["SQL", texts[1]])
    return rows


def test_a_miss_shows_each_computation_its_reads_their_tags_and_what_was_stored(
    toolbar: Client,
) -> None:
    content, subtitle = panel(toolbar, "/shop/")
    computation = r"<code>(\S+)</code></td>\s*<td><strong>\w+</strong>.*?key <code>(.*?)</code>"
    key_of = dict(re.findall(computation, content, re.S))
    assert cells(content) == [
        ["function", "tests.http.toolbar_urls.count_named", "miss", "stored", "",
         "1 tag: testapp.item key fn:tests.http.toolbar_urls.count_named(s5:apple)"],
        ["SQL", "testapp.item"],
        ["fragment", "item-list", "miss", "stored", "",
         f"2 tags: testapp.item url:/shop/ key {key_of['item-list']}"],
        ["SQL", "testapp.item"],
        ["page", "shop", "miss", "stored", "",
         f"2 tags: testapp.item url:/shop/ key {key_of['shop']}"],
    ]  # fmt: skip
    assert key_of["shop"].startswith("freshcache.view:tests.http.toolbar_urls.shop:")
    # The SQL each read ran, as the developer would find it in the SQL panel.
    assert 'SELECT COUNT(*) AS "__count" FROM "testapp_item" WHERE "testapp_item"."name" = %s' in (
        html.unescape(content)
    )
    assert subtitle == "page miss; inside: 0 of 2 hit"


def test_a_hit_then_a_write_then_a_miss(toolbar: Client) -> None:
    panel(toolbar, "/shop/")
    content, subtitle = panel(toolbar, "/shop/")
    assert [row[:5] for row in cells(content)] == [["page", "shop", "hit", "(already stored)", ""]]
    assert subtitle == "page hit"

    content, subtitle = panel(toolbar, "/add/", "post")
    assert "Nothing cached ran for this request" in content
    assert subtitle == "no cached page"
    bumps = re.search(r"Invalidations made by this request.*?</table>", content, re.S)
    assert bumps and "write" in bumps[0] and "testapp.item" in bumps[0]

    content, _ = panel(toolbar, "/shop/")
    assert [row[:4] for row in cells(content) if row[0] != "SQL"] == [
        ["function", "tests.http.toolbar_urls.count_named", "miss", "stored"],
        ["fragment", "item-list", "miss", "stored"],
        ["page", "shop", "miss", "stored"],
    ]


def test_a_bypass_shows_its_reason(toolbar: Client) -> None:
    toolbar.cookies[settings.SESSION_COOKIE_NAME] = "x"
    content, subtitle = panel(toolbar, "/shop/")
    page = [row for row in cells(content) if row[0] == "page"]
    assert page == [["page", "shop", "bypass", "not stored", "request has a session", "0 tags:"]]
    assert subtitle.startswith("page bypass")
