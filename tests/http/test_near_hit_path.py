"""The hit path with a near cache (issue 11): an async hit from memory takes no thread, and a page
decoded once serves every later hit from memory without its MAC check or decoding again.

Against the real Redis (the ``redis-near`` store of the contract suite).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import AsyncClient, Client, override_settings

import freshcache
from freshcache import core, counters, payload
from freshcache.http import serve
from freshcache.invalidation import invalidate_tags
from freshcache.stores import Hit
from freshcache.stores.near import NearStore
from tests.conftest import store_url
from tests.helpers.near_trials import wait_ready
from tests.http.conftest import count_calls, state
from tests.http_app.views import RENDERS

pytestmark = pytest.mark.redis


@pytest.fixture
def near(transactional_db: None) -> Iterator[NearStore]:
    with override_settings(FRESHCACHE={"STORE": store_url("redis-near"), "HEADER": True}):
        store = freshcache.store()
        assert isinstance(store, NearStore)
        store.clear()
        wait_ready(store)
        RENDERS.clear()
        yield store
        store.clear()


@pytest.mark.asyncio
async def test_an_async_hit_from_memory_takes_no_thread(
    near: NearStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = AsyncClient()
    first = await client.get("/t/async/3/")
    assert state(first) == "miss"
    hops = count_calls(monkeypatch, core, "sync_to_async")
    serve_hops = count_calls(monkeypatch, serve, "sync_to_async")
    remote = count_calls(monkeypatch, near.inner, "lookup")
    again = await client.get("/t/async/3/")
    assert state(again) == "hit" and again.content == first.content
    assert (hops, serve_hops, remote) == ([], [], [])
    # Not from memory (the channel closed: never healthy again): the store call takes a thread.
    near.channel.close()
    third = await client.get("/t/async/3/")
    assert state(third) == "hit" and third.content == first.content
    assert len(remote) == 1 and len(hops) >= 1


def test_a_page_is_decoded_once_per_entry_in_memory(
    near: NearStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = Client()
    first = client.get("/t/plain/")
    opened = count_calls(monkeypatch, payload, "_open")
    for _ in range(3):
        again = client.get("/t/plain/")
        assert state(again) == "hit" and again.content == first.content
    assert len(opened) == 1  # the first hit from memory verifies and decodes; no other does
    assert near.near.hits >= 3
    invalidate_tags(["http:plain"])
    changed = client.get("/t/plain/")
    assert state(changed) == "miss" and changed.content != first.content
    assert client.get("/t/plain/").content == changed.content


def test_an_entry_fetched_from_redis_is_verified_once(
    near: NearStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = Client()
    first = client.get("/t/plain/")
    near.near.flush()  # the next hit comes from Redis and is kept in memory
    opened = count_calls(monkeypatch, payload, "_open")
    for _ in range(3):
        assert client.get("/t/plain/").content == first.content
    # Once in memory it is not verified again (a heartbeat late under load may send one more
    # hit to Redis, verified once more).
    assert 1 <= len(opened) < 3, len(opened)


def test_a_bad_payload_in_memory_is_never_served(near: NearStore) -> None:
    key = "t:near:bad"
    assert core.fetch(key, lambda: "good", store=near).value == "good"
    skey = core.store_key(key)
    stored = near.near.get(skey)
    assert stored is not None
    forged = stored.payload[:-1] + bytes([stored.payload[-1] ^ 1])
    assert near.near.put(skey, Hit(forged, stored.tags), near.near.generation)
    before = counters.snapshot().get("corrupt_entries", 0)
    outcome = core.fetch(key, lambda: "recomputed", store=near)
    assert (outcome.hit, outcome.value) == (False, "recomputed")
    assert counters.snapshot()["corrupt_entries"] == before + 1


def test_cached_values_from_memory_are_not_shared(near: NearStore) -> None:
    """Pickled values may be changed by their caller: each hit decodes its own copy."""
    key = "t:near:list"
    core.fetch(key, lambda: [1, 2], store=near)
    got = core.fetch(key, lambda: [9], store=near)
    assert got.hit and got.value == [1, 2]
    got.value.append(3)
    again = core.fetch(key, lambda: [9], store=near)
    assert again.hit and again.value == [1, 2]
