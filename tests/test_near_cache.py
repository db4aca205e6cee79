"""The near cache (issue 11): hits without a network call, never older than a returned write.

Against real throwaway Redis servers. The adversarial test is the one docs/internals.md states:
a writer in process A returns from its bump and at once signals a reader in process B through a
pipe; B then looks the entry up. Any hit is a stale read. Also with the channel killed under the
trials and with Redis paused (SIGSTOP). Its protocol is in ``tests/helpers/near_trials.py``, which
``bench/near_adversarial.py`` runs 10,000 times per mode.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from typing import Any

import pytest

from freshcache.stores import Hit, Snapshot
from freshcache.stores.near import NearCache
from freshcache.stores.redis import RedisStore, parse_size
from tests.helpers.near_trials import run_trials, wait_ready
from tests.helpers.redis_server import RedisServer

pytestmark = pytest.mark.timeout(120)


def _store(server: RedisServer, near: str = "1mb", **options: str) -> Any:
    query = "&".join(f"{k}={v}" for k, v in {"near_cache": near, **options}.items())
    return RedisStore("default", f"{server.url}?{query}", socket_timeout=0.25).near()


def _put(store: Any, key: str, tags: list[str], payload: bytes = b"v") -> None:
    snapshot = store.begin()
    assert store.set(key, payload, tags, snapshot)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as srv:
        yield srv


# -- the cache alone -------------------------------------------------------------------------


def test_bounded_in_bytes_least_recently_used_first() -> None:
    near = NearCache(10_000)
    for i in range(100):
        assert near.put(f"k{i}", Hit(b"x" * 500, frozenset({f"t{i}"})), near.generation)
        assert near.bytes <= 10_000
    assert len(near) < 100
    assert near.get("k99") is not None and near.get("k0") is None
    assert not near.put("big", Hit(b"x" * 20_000, frozenset()), near.generation)


def test_an_invalidation_taken_in_meanwhile_keeps_the_entry_out() -> None:
    near = NearCache(10_000)
    since = near.generation
    near.invalidate(["t1"])
    assert not near.put("a", Hit(b"1", frozenset({"t1", "t2"})), since)
    assert near.put("b", Hit(b"2", frozenset({"t3"})), since)  # another tag: fine
    near.flush()
    assert not near.put("c", Hit(b"3", frozenset({"t3"})), since)
    assert near.get("b") is None


def test_remembered_invalidations_stay_within_their_share() -> None:
    near = NearCache(1_000_000)
    since = near.generation
    for i in range(2000):
        near.invalidate([f"blog.comment?post_id={i}:{n}" for n in range(12)])
        assert near.event_bytes <= max(64 * 1024, near.max_bytes // 16)
    # The first invalidations are forgotten: an entry fetched since then cannot be kept.
    assert near.put("k", Hit(b"v", frozenset({"unrelated"})), since) is None
    assert near.put("k", Hit(b"v", frozenset({"unrelated"})), near.generation) is not None


def test_size_option() -> None:
    assert parse_size("64mb") == 64 * 2**20 and parse_size("1000") == 1000
    for bad in ("lots", "-1", "1tb", "99gb"):
        with pytest.raises(ValueError, match="near_cache"):
            parse_size(bad)


def test_heartbeat_must_beat_the_socket_timeout(server: RedisServer) -> None:
    with pytest.raises(ValueError, match="near_heartbeat"):
        _store(server, near_heartbeat="0.1")


# -- against Redis ---------------------------------------------------------------------------


def test_hits_come_from_memory_and_a_bump_elsewhere_drops_them(server: RedisServer) -> None:
    store, other = _store(server), _store(server, near="0")
    try:
        wait_ready(store)
        _put(store, "k", ["t"])
        calls = []
        real = store.inner.lookup
        store.inner.lookup = lambda key: calls.append(key) or real(key)  # type: ignore[method-assign]
        assert isinstance(store.lookup("k"), Hit)
        assert calls == []  # served from the near cache
        other.bump(["t"])  # another process's write
        assert isinstance(store.lookup("k"), Snapshot)
        assert calls == ["k"]
    finally:
        store.close()
        other.close()


def test_own_bump_drops_at_once(server: RedisServer) -> None:
    store = _store(server)
    try:
        wait_ready(store)
        _put(store, "k", ["t"])
        store.bump(["t"])
        assert store.near.get("k") is None
        assert isinstance(store.lookup("k"), Snapshot)
    finally:
        store.close()


def test_malformed_message_empties_and_recovers(server: RedisServer) -> None:
    store = _store(server)
    try:
        wait_ready(store)
        _put(store, "k", ["t"])
        server.client().publish(store.inner._channel, b"\xffgarbage")
        assert store.channel.ready()  # drained: the garbage emptied the cache
        assert len(store.near) == 0 and store.channel.malformed == 1
        _put(store, "k", ["t"])
        assert isinstance(store.lookup("k"), Hit) and len(store.near) == 1
    finally:
        store.close()


def test_a_subscription_renewed_behind_its_back_empties_the_cache(server: RedisServer) -> None:
    """redis-py may reconnect a subscription by itself (a maintenance event) and subscribe again:
    the only sign is a new confirmation. What was published meanwhile is lost: empty."""
    store = _store(server)
    try:
        wait_ready(store)
        _put(store, "k", ["t"])
        assert store.channel.ready() and len(store.near) == 1
        with store.channel._lock:
            store.channel._pubsub.subscribe(store.inner._channel)
        deadline = time.monotonic() + 2
        while len(store.near) and time.monotonic() < deadline:
            store.channel.ready()
            time.sleep(0.01)
        assert len(store.near) == 0
    finally:
        store.close()


def test_databases_of_one_server_have_channels_of_their_own(server: RedisServer) -> None:
    """Pub/sub ignores database numbers: same prefix, databases 1 and 2, no crosstalk."""
    one = RedisStore("default", f"{server.url}/1?near_cache=1mb", socket_timeout=0.25).near()
    two = RedisStore("default", f"{server.url}/2?near_cache=1mb", socket_timeout=0.25).near()
    try:
        wait_ready(one)
        wait_ready(two)
        _put(one, "k", ["t"])
        two.bump(["t"])  # another site's tag of the same name
        assert one.channel.ready()
        assert one.near.get("k") is not None  # neither dropped nor flushed (another epoch)
        two.bump(["t"])
        one.bump(["t"])
        assert one.near.get("k") is None
    finally:
        one.close()
        two.close()


def test_killed_channel_is_not_used_until_resubscribed(server: RedisServer) -> None:
    store = _store(server)
    try:
        wait_ready(store)
        _put(store, "k", ["t"])
        server.client().client_kill_filter(_type="pubsub")
        assert not store.channel.ready()
        assert len(store.near) == 0
        wait_ready(store)
        assert store.channel.reconnects >= 2
    finally:
        store.close()


def test_paused_redis_makes_the_channel_unhealthy_before_a_write_gives_up(
    server: RedisServer,
) -> None:
    store = _store(server)
    try:
        wait_ready(store)
        server.pause()
        try:
            time.sleep(0.25)  # a bump started when the pause began gives up after this
            assert not store.channel.ready()
        finally:
            server.resume()
        wait_ready(store)
    finally:
        store.close()


# -- the adversarial test: writer returns, signals a reader in another process -------------------


@pytest.mark.parametrize("fault", ["", "kill", "pause"])
def test_no_l1_hit_is_older_than_a_returned_write(server: RedisServer, fault: str) -> None:
    # The protocol is tests/helpers/near_trials.py; bench/near_adversarial.py runs it at scale.
    result = run_trials(server, 1000 if not fault else 400, fault)
    assert result.stale == 0, result
    # The near cache was really in use: entries were served from it just before the write came
    # (most of the time; after each fault it stays unused until the channel is healthy again).
    assert result.armed > result.trials * (0.5 if not fault else 0.2), result


def test_a_forked_child_starts_its_own_channel(server: RedisServer) -> None:
    store = _store(server)
    try:
        wait_ready(store)
        _put(store, "k", ["t"])
        ctx = multiprocessing.get_context("fork")
        mine, theirs = ctx.Pipe()

        def child() -> None:
            fresh = len(store.near) == 0 or not store.channel.ready()
            wait_ready(store)
            theirs.send((fresh, isinstance(store.lookup("k"), Hit)))

        process = ctx.Process(target=child, daemon=True)
        process.start()
        assert mine.poll(10)
        fresh, hit = mine.recv()
        process.join(5)
        assert fresh and hit  # its own subscription, then hits again (from Redis, then memory)
    finally:
        store.close()


def test_clear_empties_every_process_near_cache(server: RedisServer) -> None:
    store, other = _store(server), _store(server)
    try:
        wait_ready(store)
        wait_ready(other)
        _put(store, "k", ["t"])
        assert isinstance(store.lookup("k"), Hit) and len(store.near) == 1
        other.clear()  # manage.py freshcache clear, in another process
        assert isinstance(store.lookup("k"), Snapshot)
        assert store.channel.malformed == 0
    finally:
        store.close()
        other.close()


# -- from the new-user review ------------------------------------------------------------------


def test_a_non_ascii_tag_bumped_elsewhere_drops_the_entry(server: RedisServer) -> None:
    # A model named Café has the table tag "shop.café": messages name it in UTF-8.
    store, other = _store(server), _store(server, near="0")
    try:
        wait_ready(store)
        _put(store, "k", ["shop.café"])
        assert isinstance(store.lookup("k"), Hit)
        other.bump(["shop.café"])
        assert isinstance(store.lookup("k"), Snapshot)
        assert store.channel.malformed == 0
    finally:
        store.close()
        other.close()


def test_tags_that_no_message_can_name_are_not_kept() -> None:
    near = NearCache(100_000)
    assert not near.put("k", Hit(b"v", frozenset({"a\nb"})), near.generation)


def test_tags_count_against_the_bound() -> None:
    near = NearCache(100_000)
    many = frozenset(f"tag-{i}" for i in range(100))
    assert near.put("k", Hit(b"v", many), near.generation)
    assert near.bytes > 100 * 400  # each tag's index and objects, not only its name


def test_a_small_socket_timeout_without_near_cache_builds(server: RedisServer) -> None:
    store = RedisStore("default", f"{server.url}?socket_timeout=0.004")
    assert store.near() is store
    store.close()


def test_the_subscription_does_not_take_the_stores_connections(server: RedisServer) -> None:
    store = _store(server, max_connections="1")
    try:
        wait_ready(store)
        _put(store, "k", ["t"])
        store.bump(["t"])  # the store's only connection is still its own
        assert isinstance(store.lookup("k"), Snapshot)
    finally:
        store.close()


def test_the_documented_configuration_builds_a_near_cache() -> None:
    """docs/settings.md's example, exactly as shown."""
    import ast
    import re
    from pathlib import Path

    from freshcache.stores import from_url
    from freshcache.stores.near import NearStore

    doc = (Path(__file__).resolve().parents[1] / "docs" / "settings.md").read_text()
    section = doc.split("## Near cache (opt-in)", 1)[1]
    block = re.search(r"```python\nFRESHCACHE = (\{.*?\})\n```", section, re.S)
    assert block is not None, "the near cache's example moved"
    url = ast.literal_eval(block.group(1))["STORE"]
    store = from_url("default", url)
    try:
        assert isinstance(store, NearStore) and store.near.max_bytes == 64 * 2**20
    finally:
        store.close()


def test_the_channel_thread_outlives_an_unexpected_error(server: RedisServer) -> None:
    store = _store(server)
    try:
        wait_ready(store)
        channel = store.channel
        real, failures = channel._subscribe, []

        def broken() -> bool:
            if not failures:
                failures.append(1)
                raise RuntimeError("a bug in the subscription")
            return real()

        channel._subscribe = broken  # type: ignore[method-assign]
        server.client().client_kill_filter(_type="pubsub")  # the thread must subscribe again
        assert not channel.ready()
        wait_ready(store)
        assert failures == [1] and channel._thread is not None and channel._thread.is_alive()
    finally:
        store.close()
