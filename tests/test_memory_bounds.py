"""Bounded memory (issue 9, item 7): MAX_ENTRY_SIZE, TTLs Redis can evict by, and a flood of
random query strings against a Redis at ``maxmemory``.

What is observed: the response and its ``X-Freshcache`` reason, what reached the store (the
counters, Redis ``TTL`` / ``INFO``), and that a write is seen by the next read.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import path

import freshcache
from freshcache import cached, counters, depends_on, invalidate
from freshcache.stores import Store
from tests.helpers import RedisServer

RENDERS: Counter[str] = Counter()
BIG = 5 * 1024 * 1024
FILLER = "x" * 12_000  # a page of 12 KB: 3,000 of them are 36 MB, well past 20 MB
NEWS = {"text": "first"}


def big_page(request: HttpRequest) -> HttpResponse:
    RENDERS["big"] += 1
    return HttpResponse(b"b" * BIG)


def filler_page(request: HttpRequest) -> HttpResponse:
    depends_on("bounds:filler")  # a tag: its TTL is lengthened by every page stored with it
    RENDERS["filler"] += 1
    return HttpResponse(FILLER)


def news_page(request: HttpRequest) -> HttpResponse:
    depends_on("bounds:news")
    RENDERS["news"] += 1
    return HttpResponse(f"news: {NEWS['text']}")


urlpatterns = [
    path("big/", big_page),
    path("filler/", filler_page),
    path("news/", news_page),
]

MIDDLEWARE = [*settings.MIDDLEWARE, "freshcache.middleware.CacheMiddleware"]


def site(store_url: str, **extra: Any) -> Any:
    """The site-wide middleware over this module's views, caching into ``store_url``."""
    return override_settings(
        ROOT_URLCONF=__name__,
        MIDDLEWARE=MIDDLEWARE,
        FRESHCACHE={"STORE": store_url, "HEADER": True, **extra},
    )


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    RENDERS.clear()
    NEWS["text"] = "first"
    yield


def header(response: Any) -> str:
    return str(response["X-Freshcache"])


# -- MAX_ENTRY_SIZE ------------------------------------------------------------------------------


@cached
def large(n: int) -> bytes:
    depends_on("bounds:large")
    RENDERS["large"] += 1
    return b"L" * n


def test_too_large_is_served_never_stored_on_every_store(fresh_store: Store) -> None:
    out = large.outcome(2 * 1024 * 1024)
    assert (len(out.value), out.hit, out.stored, out.reason) == (2 * 1024 * 1024, False, False,
                                                                 "too large")  # fmt: skip
    again = large.outcome(2 * 1024 * 1024)
    assert (again.hit, again.reason) == (False, "too large")
    assert RENDERS["large"] == 2
    assert counters.snapshot()["stores_skipped_too_large"] == 2
    assert counters.snapshot()["stores"] == 0
    small = large.outcome(1000)  # under the limit: stored and hit as usual
    assert small.stored and large.outcome(1000).hit


def test_max_entry_size_is_a_setting(fresh_store: Store, store_kind: str) -> None:
    from tests.conftest import store_url

    with override_settings(FRESHCACHE={"STORE": store_url(store_kind), "MAX_ENTRY_SIZE": 500}):
        assert large.outcome(1000).reason == "too large"
    with override_settings(FRESHCACHE={"STORE": store_url(store_kind), "MAX_ENTRY_SIZE": None}):
        out = large.outcome(2 * 1024 * 1024)
        assert out.stored and large.outcome(2 * 1024 * 1024).hit


def test_a_5mb_page_is_served_with_reason_too_large(fresh_store: Store, store_kind: str) -> None:
    from tests.conftest import store_url

    with site(store_url(store_kind)):
        for _ in range(2):
            response = Client().get("/big/")
            assert response.status_code == 200
            assert len(response.content) == BIG
            assert header(response) == "bypass; reason=too large"
        assert RENDERS["big"] == 2  # rendered each time: never stored
        assert Client().get("/news/").status_code == 200
        assert header(Client().get("/news/")) == "hit"  # small pages are still cached


# -- TTLs on Redis keys --------------------------------------------------------------------------


@pytest.mark.redis
def test_redis_entries_and_tag_versions_expire(transactional_db: None) -> None:
    with RedisServer() as server, site(server.url, RELAY=False):
        client = server.client()
        assert Client().get("/news/").status_code == 200
        entry_keys = client.keys("{fc}:e:*")
        tag_key = "{fc}:t:bounds:news"
        assert len(entry_keys) == 1
        entry_ttl = client.pttl(entry_keys[0])
        assert 0 < entry_ttl <= 86_400_000
        assert client.pttl(tag_key) >= entry_ttl - 1000  # outlives the entry that records it
        invalidate("bounds:news")
        assert 0 < client.pttl(tag_key) <= 86_400_000  # a bump keeps a TTL too
        seq_ttl = [client.ttl(k) for k in ("{fc}:seq", "{fc}:epoch", "{fc}:seq:copy")]
        assert seq_ttl == [-1, -1, -1]  # the position never expires (docs/internals.md)


@cached(timeout=3600)
def hourly() -> str:
    depends_on("bounds:hourly")
    return "h"


@pytest.mark.redis
def test_a_longer_entry_lengthens_its_tag_versions(transactional_db: None) -> None:
    with (
        RedisServer() as server,
        override_settings(FRESHCACHE={"STORE": server.url, "TIMEOUT": 60, "RELAY": False}),
    ):
        client = server.client()
        invalidate("bounds:hourly")
        assert 0 < client.ttl("{fc}:t:bounds:hourly") <= 60
        assert hourly.outcome().stored
        assert client.ttl("{fc}:t:bounds:hourly") > 3000
        with override_settings(FRESHCACHE={"STORE": server.url, "TIMEOUT": None, "RELAY": False}):
            assert large.outcome(10).stored
            assert client.ttl("{fc}:t:bounds:large") == -1  # TIMEOUT None: nothing expires
            invalidate("bounds:hourly")
            assert client.ttl("{fc}:t:bounds:hourly") == -1


# -- a flood of random query strings -------------------------------------------------------------


def used_memory(client: Any) -> int:
    """Redis's ``used_memory`` without its clients' buffers (``mem_clients_normal``): a
    connection that just sent a 12 KB script may keep a query buffer larger than that for a
    while (one CI run ended 1 KB past the bound below), which is not what freshcache stored."""
    info = client.info("memory")
    return int(info["used_memory"]) - int(info.get("mem_clients_normal", 0))


@pytest.mark.redis
@pytest.mark.parametrize("policy", ["volatile-lru", "allkeys-lru"])
def test_flood_keeps_redis_under_maxmemory_and_fresh(transactional_db: None, policy: str) -> None:
    """3,000 random query strings of 12 KB pages into ``maxmemory 20mb``: every response is a
    200, Redis stays under its limit by evicting, and a write is seen by the next read."""
    maxmemory = 20 * 1024 * 1024
    with (
        RedisServer("--maxmemory", str(maxmemory), "--maxmemory-policy", policy) as server,
        site(server.url),
    ):
        redis_client = server.client()
        browser = Client()
        peak = 0
        reasons: Counter[str] = Counter()
        for i in range(3000):
            response = browser.get(f"/filler/?q={secrets.token_hex(8)}")
            assert response.status_code == 200, header(response)
            reasons[header(response)] += 1
            if i % 100 == 0:
                peak = max(peak, used_memory(redis_client))
                page = browser.get("/news/")
                assert page.content == f"news: {NEWS['text']}".encode()
                NEWS["text"] = f"edition {i}"  # a write, then its invalidation
                invalidate("bounds:news")
                assert browser.get("/news/").content == f"news: {NEWS['text']}".encode()
        peak = max(peak, used_memory(redis_client))
        stats = redis_client.info("stats")
        assert peak <= maxmemory, (peak, maxmemory)
        assert stats["evicted_keys"] > 0, "the flood never made Redis evict anything"
        assert freshcache.stats()["store_errors"] == 0
        # allkeys-lru may evict the sequence itself: a new epoch, and the page computed across
        # it is not stored (a miss, never a stale hit). volatile-lru never evicts it.
        allowed = {"miss", "bypass; reason=a dependency changed while computing"}
        assert set(reasons) <= allowed, reasons
        if policy.startswith("volatile"):
            assert reasons["miss"] == 3000, reasons
        else:
            assert reasons["miss"] > 2900, reasons


@pytest.mark.redis
def test_noeviction_at_maxmemory_is_never_a_500(transactional_db: None) -> None:
    """A full Redis that refuses writes: pages are served uncached (reason store full), hits
    stored before keep being served, and a write is still seen by the next read."""
    with (
        RedisServer("--maxmemory", "4mb", "--maxmemory-policy", "noeviction") as server,
        site(server.url),
    ):
        browser = Client()
        assert browser.get("/news/").status_code == 200
        assert header(browser.get("/news/")) == "hit"
        reasons: Counter[str] = Counter()
        for _ in range(600):  # 7 MB of pages into 4 MB
            response = browser.get(f"/filler/?q={secrets.token_hex(8)}")
            assert response.status_code == 200
            reasons[header(response)] += 1
        assert reasons["bypass; reason=store full"] > 0, reasons
        # Refused, not stored past the limit (set.lua writes the entry before any PEXPIRE).
        used = server.client().info("memory")
        assert used_memory(server.client()) <= 4 * 1024 * 1024 + 64 * 1024, used
        assert set(reasons) <= {"miss", "bypass; reason=store full"}, reasons
        assert header(browser.get("/news/")) == "hit"  # lookups still work when full
        NEWS["text"] = "second"
        invalidate("bounds:news")  # its bump is refused (OOM): the log keeps it
        response = browser.get("/news/")
        assert (response.status_code, response.content) == (200, b"news: second")


# -- the database store purges expired entries ---------------------------------------------------


@pytest.mark.postgres
def test_database_store_deletes_expired_entries(transactional_db: None) -> None:
    from django.db import connection

    from freshcache.core import fetch
    from freshcache.stores import from_url

    def tagged(value: str) -> Any:
        def compute() -> str:
            depends_on("bounds:db")
            return value

        return compute

    def rows() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM freshcache_entry")
            return int(cursor.fetchone()[0])

    with override_settings(FRESHCACHE={"STORE": "database://", "RELAY": False}):
        freshcache.store().clear()
        assert fetch("bounds:short", tagged("s"), timeout=0.05).stored
        assert rows() == 1
        time.sleep(0.1)
        other = from_url("other", "database://")  # another process: purges on its first store
        assert fetch("bounds:long", tagged("l"), store=other).stored
        assert rows() == 1  # the expired entry is gone, only the new one is left
        assert fetch("bounds:long", tagged("l")).hit
        assert not fetch("bounds:short", tagged("s2")).hit
        freshcache.store().clear()
