"""``inspect``, ``why`` and ``doctor``: what they print after real requests and writes."""

from __future__ import annotations

import io
import logging
import time

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client, override_settings

from freshcache.log import triggers
from freshcache.stores import Store
from tests.commands.conftest import DOWN, run, run_json
from tests.commands.site import touch_other
from tests.conftest import store_url
from tests.testapp.models import Item

pytestmark = pytest.mark.django_db(transaction=True)


def test_inspect_a_cached_page_then_after_a_write(site: Store) -> None:
    row = Item.objects.create(name="first")
    client = Client(HTTP_HOST="testserver")
    assert client.get(f"/item/{row.pk}/")["X-Freshcache"] == "miss"

    found = run_json("inspect", f"/item/{row.pk}/")
    assert (found["view"], found["cached_by"], found["state"]) == ("item", "cache_page", "valid")
    assert found["status"] == 200 and found["body_bytes"] == len(b"<h1>first</h1>")
    tags = {t["tag"]: t for t in found["tags"]}
    assert {f"testapp.item:{row.pk}", f"url:/item/{row.pk}/"} <= set(tags)
    assert all(t["stored"] == t["current"] for t in found["tags"])
    text = run("inspect", f"/item/{row.pk}/")
    assert "state      valid: a request now is served this entry" in text
    assert f"url        http://testserver/item/{row.pk}/" in text

    row.name = "second"
    row.save()
    moved = run_json("inspect", f"http://testserver/item/{row.pk}/")
    assert moved["state"] == "moved"
    assert moved["why"].startswith(f"tag testapp.item:{row.pk} moved from ")
    assert moved["why"].endswith(": the next request renders it again")
    # The same entry by its key, as a script would pass it:
    assert run_json("inspect", moved["key"])["state"] == "moved"
    assert run_json("inspect", moved["stored_key"])["tags"] == moved["tags"]


def test_inspect_follows_a_vary_marker(site: Store) -> None:
    client = Client(HTTP_HOST="testserver")
    client.get("/greeting/", HTTP_ACCEPT_LANGUAGE="fr")  # stores the marker
    client.get("/greeting/", HTTP_ACCEPT_LANGUAGE="fr")  # stores the page under key2
    found = run_json("inspect", "/greeting/", "--header", "Accept-Language: fr")
    assert found["vary"] == ["accept-language"] and found["state"] == "valid"
    assert found["body_bytes"] == len(b"bonjour 0")
    other = run_json("inspect", "/greeting/", "--header", "Accept-Language: de")
    assert other["state"] == "not cached"


def test_inspect_a_page_never_stored_shows_the_journals_reasons(site: Store) -> None:
    row = Item.objects.create(name="topic")
    Client(HTTP_HOST="testserver").get(f"/topic/{row.pk}/")
    found = run_json("inspect", f"/topic/{row.pk}/")
    assert found["state"] == "not cached"
    assert found["reasons"] == {"wrote testapp.Item.value of a row it read": 1}
    assert run_json("inspect", "/plain/")["why"] == (
        "not cached: no cache_page on the view and no CacheMiddleware"
    )


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("/no/such/page/", r"http://testserver/no/such/page/: no URL pattern matches "
         r"'/no/such/page/' \(a 404\): nothing is cached for it"),
        ("freshcache.page:xyz", r"'freshcache.page:xyz' is not a page key: a page key is "
         r"freshcache.<namespace>:<40 hex digits>"),
        ("nonsense", r"'nonsense' is neither a URL \(/path/ or http://host/path/\) nor a key"),
    ],
)
def test_inspect_refuses_what_it_cannot_look_up(site: Store, given: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run("inspect", given)


@pytest.mark.redis
def test_inspect_and_why_with_the_store_down(transactional_db: None) -> None:
    with override_settings(FRESHCACHE={"STORE": DOWN}, ROOT_URLCONF="tests.commands.site"):
        with pytest.raises(CommandError, match=r"store 'default' cannot be reached: "):
            run("inspect", "/item/1/")
        with pytest.raises(CommandError, match=r"store 'default' cannot be reached: "):
            run("why", "/item/1/")


def test_why_names_the_write_that_invalidated_a_page(site: Store) -> None:
    row = Item.objects.create(name="a")
    other = Item.objects.create(name="b")
    client = Client(HTTP_HOST="testserver")
    client.get(f"/item/{row.pk}/")
    row.name = "a2"
    row.save()  # hits the page
    other.name = "b2"
    other.save()  # does not
    client.get(f"/item/{row.pk}/")  # stored again, with the new versions
    found = run_json("why", f"/item/{row.pk}/")
    assert found["cached"] is True and found["moved"] == []
    (newest, created) = found["invalidations"][:2]
    assert newest["source"] == "write" and newest["hit"] == [f"testapp.item:{row.pk}"]
    assert created["source"] == "write"  # Item.objects.create: the table's tag
    assert all(f"testapp.item:{other.pk}" not in r["hit"] for r in found["invalidations"])
    text = run("why", f"testapp.item:{row.pk}")
    assert text.splitlines()[1].split()[:2] == ["when", "source"]
    assert f"testapp.item:{row.pk}" in text.splitlines()[2]


@pytest.mark.postgres
@pytest.mark.relay_reports
def test_why_names_a_write_from_outside_django_that_the_relay_applied(site: Store) -> None:
    from tests.log.conftest import clear_log, outside_params

    row = Item.objects.create(name="o")
    client = Client(HTTP_HOST="testserver")
    client.get(f"/item/{row.pk}/")
    clear_log()  # the create's row, applied by its writer already
    with psycopg.connect(**outside_params(), autocommit=True) as outside:  # as psql would
        outside.execute("UPDATE testapp_item SET name = 'o2' WHERE id = %s", [row.pk])
    call_command("freshcache", "relay", "--once", stdout=io.StringIO())
    found = run_json("why", f"/item/{row.pk}/")
    newest = found["invalidations"][0]
    assert newest["source"] == "relay: UPDATE testapp_item", found["invalidations"]
    assert f"testapp.item:{row.pk}" in newest["hit"]
    assert "relay: UPDATE testapp_item" in run("why", f"testapp.item:{row.pk}")
    # A Django write bumps by itself: the newest is the writer's.
    row.name = "o3"
    row.save()
    call_command("freshcache", "relay", "--once", stdout=io.StringIO())
    sources = [r["source"] for r in run_json("why", f"/item/{row.pk}/")["invalidations"]]
    # (a relay may bump the row too, before the writer marks it: "write" is among the newest)
    assert "write" in sources[:2], sources


def test_why_for_a_page_that_is_not_cached(site: Store) -> None:
    row = Item.objects.create(name="t")
    Client(HTTP_HOST="testserver").get(f"/topic/{row.pk}/")
    text = run("why", f"/topic/{row.pk}/")
    assert "not cached: nothing is stored for it now" in text
    assert "1 x wrote testapp.Item.value of a row it read" in text


def test_doctor_names_the_view_counter_and_the_setting_line(
    site: Store, store_kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 13: a page that increments a counter of the row it shows is never stored;
    doctor names the view and the exact line, the log says it once, and with the line added
    the page is stored."""
    row = Item.objects.create(name="forum topic")
    client = Client(HTTP_HOST="testserver")
    with caplog.at_level(logging.WARNING, logger="freshcache"):
        for _ in range(3):
            assert client.get(f"/topic/{row.pk}/")["X-Freshcache"].startswith("bypass")
    line = 'FRESHCACHE["VOLATILE_FIELDS"] = ["testapp.Item.value"]'
    warnings = [r.getMessage() for r in caplog.records if "never stored" in r.getMessage()]
    assert warnings == [
        "freshcache: page 'topic' is never stored: its render wrote testapp.Item.value of a row "
        "it read, so it invalidates itself. If that column only counts (views, visits), add to "
        f"settings.py: {line}; then run: python manage.py freshcache changefeed install"
    ]  # the suite's log database is PostgreSQL: its triggers must learn of the column too

    text = run("doctor")
    assert "  warning: page 'topic': computed 3 time(s), never stored" in text
    assert "      3 x wrote testapp.Item.value of a row it read" in text
    assert f"      fix: if testapp.Item.value only counts, add to settings.py: {line}" in text
    report = run_json("doctor")
    (never,) = report["never_stored"]
    assert never["name"] == "topic" and line in never["reasons"][0]["fix"]
    assert report["errors"] == 0 and all(s["ok"] for s in report["stores"])

    conf = {"STORE": store_url(store_kind), "HEADER": True}
    try:
        with override_settings(FRESHCACHE={**conf, "VOLATILE_FIELDS": ["testapp.Item.value"]}):
            # The warning's second step: on PostgreSQL, triggers installed before the column
            # was declared volatile log every counter UPDATE, and the relay bumps the row's
            # tags a moment after each render: a miss on every request (manage.py check says
            # the triggers are outdated). Installed again, they log nothing for it.
            if connection.vendor == "postgresql":
                assert "triggers installed" in run("changefeed", "install")
            assert client.get(f"/topic/{row.pk}/")["X-Freshcache"] == "miss"
            time.sleep(0.3)  # past the relay's wake-up: a bump it made would show as a miss
            states = [client.get(f"/topic/{row.pk}/")["X-Freshcache"] for _ in range(5)]
            assert states == ["hit"] * 5, states
            assert run_json("doctor")["never_stored"] == []  # stored now: no longer diagnosed
    finally:
        if connection.vendor == "postgresql":
            triggers.install()  # the suite's triggers again, for its own settings


@pytest.mark.redis
def test_doctor_reports_a_store_that_is_down(transactional_db: None) -> None:
    with override_settings(FRESHCACHE={"STORE": DOWN, "STORES": {"pages": "memory://"}}):
        with pytest.raises(CommandError, match=r"1 problem\(s\) found"):
            run("doctor")
        from io import StringIO

        from django.core.management import call_command

        out = StringIO()
        with pytest.raises(CommandError):
            call_command("freshcache", "doctor", stdout=out, no_color=True)
        assert "  error: default (redis://127.0.0.1:1/0" in out.getvalue()
        assert "  ok: pages (memory://) answered in" in out.getvalue()


def test_a_write_to_a_row_not_read_keeps_the_general_reason(
    site: Store, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = Item.objects.create(name="a"), Item.objects.create(name="b")
    with caplog.at_level(logging.WARNING, logger="freshcache"):
        assert touch_other(a.pk, b.pk) == "a"
    assert not [r for r in caplog.records if "never stored" in r.getMessage()]
    (never,) = run_json("doctor")["never_stored"]
    (reason,) = never["reasons"]
    assert reason["reason"] == "wrote to testapp_item"
    assert reason["fix"].startswith("the render writes to the database: move the write out")
