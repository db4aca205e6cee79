"""The journal (``freshcache.journal``, ``stores/journal.py``): what every store keeps for
``manage.py freshcache why|stats|doctor`` and the dashboard, written from real computations and
writes, read back from the real stores, and from another process on a shared store."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import path

import freshcache
from freshcache import cached, invalidate, journal
from freshcache.http.decorators import cache_page
from freshcache.stores import Store, StoreUnavailable
from tests.conftest import store_url
from tests.testapp.models import Item

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent


def test_a_store_keeps_bounded_rings_and_counters(fresh_store: Store) -> None:
    journal.reset()  # also this process's buffer: an earlier test's numbers, flushed late, land
    kept = fresh_store.journal()  # in whichever store is the default then (this one)
    kept.push("invalidations", [f"r{i}" for i in range(7)], keep=5)
    assert kept.read("invalidations", 3) == ["r6", "r5", "r4"]  # newest first
    kept.push("invalidations", ["r7"], keep=5)
    assert kept.read("invalidations", 10) == ["r7", "r6", "r5", "r4", "r3"]
    assert kept.read("slow", 10) == []
    kept.add({"a": 1.0, "b": 0.25})
    kept.add({"a": 2.0})
    assert kept.counts() == {"a": 3.0, "b": 0.25}
    kept.reset()
    assert kept.counts() == {} and kept.read("invalidations", 10) == []


@cached
def count_items(name: str) -> int:
    return Item.objects.filter(name=name).count()


NAME = "tests.test_journal.count_items"


def test_hits_misses_and_invalidations_are_recorded(fresh_store: Store) -> None:
    journal.reset()
    assert count_items("j") == 0  # a miss, stored
    assert count_items("j") == 0  # a hit
    assert count_items("j") == 0
    Item.objects.create(name="j")  # a write: bumps what count_items read
    assert count_items("j") == 1
    invalidate("weather:oslo")
    journal.flush()

    (stat,) = [s for s in journal.stats() if s.name == NAME]
    assert (stat.kind, stat.hits, stat.misses, stat.stored, stat.bypasses) == (
        "function", 2, 2, 2, 0
    )
    assert stat.hit_ratio == 0.5 and stat.seconds > 0 and stat.reasons == {}

    newest, write = journal.invalidations(limit=2)
    assert newest.tags == ("weather:oslo",) and newest.source == "invalidate"
    assert write.source == "write" and write.origin.endswith(f":{os.getpid()}")
    assert any(tag.startswith("testapp.item") for tag in write.tags)
    assert write.tag_count == len(write.tags) and not write.failed
    # Only those that bumped a given tag (what `why` asks):
    assert journal.invalidations(touching={"weather:oslo"}) == [newest]
    assert journal.invalidations(touching={"nothing:here"}) == []
    slow = journal.slowest()
    assert slow and all(s.name == NAME and s.stored for s in slow)
    assert slow == sorted(slow, key=lambda s: -s.seconds)


@cache_page
def counted(request: HttpRequest, pk: int) -> HttpResponse:
    """Shows a row and counts the view in that same row: every render invalidates itself."""
    item = Item.objects.get(pk=pk)
    Item.objects.filter(pk=pk).update(value=F("value") + 1)
    return HttpResponse(f"{item.name}: seen {item.value} times")


urlpatterns = [path("journal/counted/<int:pk>/", counted, name="journal-counted")]


def test_why_a_page_was_not_stored_is_counted(fresh_store: Store) -> None:
    """A page whose render writes a row it read is never stored: the reason is counted per
    view, so `doctor` can name it."""
    journal.reset()
    item = Item.objects.create(name="viewed", value=0)
    with override_settings(ROOT_URLCONF=__name__):
        client = Client()
        for _ in range(3):
            assert client.get(f"/journal/counted/{item.pk}/").status_code == 200
        journal.flush()
        (stat,) = [s for s in journal.stats() if s.kind == "page"]
    assert stat.name == "journal-counted"
    assert stat.misses == 3 and stat.stored == 0 and stat.hits == 0
    (reason,) = stat.reasons
    assert stat.reasons[reason] == 3


def test_the_flusher_thread_writes_without_being_asked(fresh_store: Store) -> None:
    journal.reset()
    invalidate("flushed:by-thread")
    deadline = time.monotonic() + 10 * journal.FLUSH_SECONDS
    while not journal.invalidations(touching={"flushed:by-thread"}):
        assert time.monotonic() < deadline, "the journal was never flushed"
        time.sleep(0.05)


@pytest.mark.redis
def test_another_process_reads_what_this_one_recorded(transactional_db: None) -> None:
    """The point of keeping it in the store: a command run elsewhere sees the web processes'
    numbers."""
    url = store_url("redis")
    with override_settings(FRESHCACHE={"STORE": url}):
        journal.reset()
        invalidate("seen:elsewhere")
        assert count_items("x") == 0
        journal.flush()
        code = (
            "import django, json; django.setup()\n"
            "from django.test import override_settings\n"
            "from freshcache import journal\n"
            f"with override_settings(FRESHCACHE={{'STORE': {url!r}}}):\n"
            "    i = journal.invalidations(touching={'seen:elsewhere'})\n"
            "    s = [x.misses for x in journal.stats() if x.name.endswith('count_items')]\n"
            "    print(json.dumps([[r.origin for r in i], s]))\n"
        )
        paths = (ROOT / "src", ROOT, ROOT / "example")
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
               "PYTHONPATH": os.pathsep.join(str(p) for p in paths)}  # fmt: skip
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=60, cwd=ROOT)  # fmt: skip
        assert out.returncode == 0, out.stderr
        origins, misses = json.loads(out.stdout.strip().splitlines()[-1])
    assert [origin.rpartition(":")[2] for origin in origins] == [str(os.getpid())]
    assert misses == [1]


@pytest.mark.redis
def test_a_forked_child_records_its_own_and_not_its_parents(transactional_db: None) -> None:
    """gunicorn forks its workers after the app is loaded: a child starts with an empty buffer
    and a flusher thread of its own."""
    with override_settings(FRESHCACHE={"STORE": store_url("redis")}):
        journal.reset()
        invalidate("parent:before-fork")  # buffered in the parent, not flushed yet
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                invalidate("child:own")
                deadline = time.monotonic() + 10 * journal.FLUSH_SECONDS
                while not journal.invalidations(touching={"child:own"}):
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
                else:
                    code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child's flusher never wrote"
        journal.flush()
        recorded = [r.tags for r in journal.invalidations()]
    assert recorded.count(("parent:before-fork",)) == 1  # once: not again by the child
    assert recorded.count(("child:own",)) == 1


def test_a_store_that_is_down_loses_the_interval_quietly(
    transactional_db: None, caplog: pytest.LogCaptureFixture
) -> None:
    """Never in the way: a journal that cannot be written costs its numbers, not a request."""
    down = "redis://127.0.0.1:1/0?socket_timeout=0.05&connect_timeout=0.05"
    with override_settings(FRESHCACHE={"STORE": down}):
        invalidate("lost:interval")
        with pytest.raises(StoreUnavailable):
            journal.flush()
        invalidate("lost:again")
        journal._failed_logged = False
        with caplog.at_level(logging.WARNING, logger="freshcache"):
            journal._flush_quietly()
            journal._flush_quietly()
        lost = [r for r in caplog.records if "journal could not be written" in r.getMessage()]
        assert len(lost) == 1
        assert Client().get("/").status_code in (200, 404)


def test_off_records_nothing(transactional_db: None) -> None:
    with override_settings(FRESHCACHE={"STORE": "memory://", "JOURNAL": False}):
        journal.reset()
        invalidate("not:recorded")
        assert count_items("off") == 0
        journal.flush()
        assert journal.invalidations() == [] and journal.stats() == []
    with override_settings(FRESHCACHE={"STORE": "memory://"}):
        invalidate("recorded")
        journal.flush()
        assert [r.tags for r in journal.invalidations()] == [("recorded",)]


def test_garbage_in_the_journal_is_skipped(fresh_store: Store) -> None:
    journal.reset()
    kept = freshcache.store().journal()
    kept.push("invalidations", ["not json", json.dumps({"at": "x"}), json.dumps([1])], keep=10)
    kept.push("slow", ["{}", "null"], keep=10)
    kept.add({"no separators": 1.0})
    assert journal.invalidations() == [] and journal.slowest() == [] and journal.stats() == []
