"""The near cache on Redis Cluster (issue 14 item 4): one near cache per process in front of a
``redis+cluster://`` store, kept coherent by sharded pub/sub, one channel per shard.

A real cluster of 3 masters and 3 replicas on loopback (``tests/helpers/redis_cluster.py``).
Two store objects stand for two processes: each has its own connections, subscriptions and
near cache, so what the reader's near cache hears of the writer's bumps comes through Redis
alone. A read is the core's protocol on the raw store (``lookup``, compute, ``set``), so that a
hit served from the near cache can be told from one served by Redis (``peek``).
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator

import pytest
from django.core.exceptions import ImproperlyConfigured

from freshcache.checks.stores import check_store
from freshcache.stores import from_url
from freshcache.stores.base import Hit, Store, StoreUnavailable
from freshcache.stores.near import NearStore
from freshcache.stores.redis_channel import AllChannels
from freshcache.stores.redis_shards import SHARDS, ShardedRedisStore
from tests.helpers.redis_cluster import ClusterSetup

pytestmark = pytest.mark.redis

#: Entry keys spread over every shard (checked by ``_spread``).
KEYS = [f"page:{i}" for i in range(24)]
TAG = "near:t"


@pytest.fixture
def cluster() -> Iterator[ClusterSetup]:
    with ClusterSetup() as running:
        yield running


def stores(cluster: ClusterSetup, query: str = "near_cache=1mb") -> tuple[NearStore, NearStore]:
    url = cluster.url(f"prefix=nc&socket_timeout=0.5&connect_timeout=0.5&{query}")
    reader, writer = from_url("reader", url), from_url("writer", url)
    assert isinstance(reader, NearStore) and isinstance(writer, NearStore)
    return reader, writer


def _sharded(store: NearStore) -> ShardedRedisStore:
    inner = store.inner
    assert isinstance(inner, ShardedRedisStore)
    return inner


def _spread(store: NearStore) -> None:
    assert {_sharded(store).shard_of(k) for k in KEYS} == set(range(SHARDS))


def until_ready(store: NearStore, seconds: float = 15.0) -> None:
    """Wait until every shard's channel is healthy (subscribed, its heartbeat echoed)."""
    deadline = time.monotonic() + seconds
    while not store.channel.ready():
        assert time.monotonic() < deadline, "the near cache's channels never became healthy"
        time.sleep(0.02)


def read(store: Store, key: str, truth: dict[str, int], tag: str = TAG) -> int:
    """The core's protocol: a hit, or a miss whose value (read after the snapshot) is stored
    with tags ``tag`` and the key."""
    found = store.lookup(key)
    if isinstance(found, Hit):
        return int(found.payload)
    value = truth[key]
    store.set(key, str(value).encode(), [tag, key], found)
    return value


def fill(
    store: NearStore, truth: dict[str, int], keys: list[str] = KEYS, tag: str = TAG
) -> None:
    """Read every key until each is served from ``store``'s near cache."""
    until_ready(store)
    deadline = time.monotonic() + 15
    while True:
        for key in keys:
            # StoreUnavailable: the breaker of a shard that failed over, still open.
            with contextlib.suppress(StoreUnavailable):
                assert read(store, key, truth, tag) == truth[key]
        if all(store.peek(key) is not None for key in keys):
            return
        assert time.monotonic() < deadline, "the near cache never kept every key"
        time.sleep(0.02)


def test_the_url_accepts_a_near_cache_with_a_short_heartbeat() -> None:
    url = "redis+cluster://127.0.0.1:7000?prefix=site&near_cache=1mb&near_heartbeat=0.05"
    assert check_store("c", url, warn=False) == []
    store = from_url("c", url)
    assert isinstance(store, NearStore) and isinstance(store.channel, AllChannels)
    assert len(store.channel.channels) == SHARDS
    store.close()
    guide = "redis+cluster://10.0.0.1:7000,10.0.0.2:7000?prefix=site&near_cache=64mb"
    built = from_url("c", guide)  # docs/scaling.md's, as written
    assert isinstance(built, NearStore) and isinstance(built.inner, ShardedRedisStore)
    assert check_store("c", guide, warn=False) == []
    built.close()
    slow = "redis+cluster://127.0.0.1:7000?near_cache=1mb&near_heartbeat=0.5"
    with pytest.raises((ValueError, ImproperlyConfigured), match=re.escape("at most 0.2 s")):
        from_url("c", slow)


def test_every_shards_bump_reaches_the_other_near_cache_before_the_writer_returns(
    cluster: ClusterSetup,
) -> None:
    reader, writer = stores(cluster)
    try:
        _spread(reader)
        truth = dict.fromkeys(KEYS, 0)
        for round_ in range(15):
            fill(reader, truth)
            for key in KEYS:
                truth[key] = round_ + 1
            writer.bump([TAG])
            # Returned: the reader's near cache has dropped every entry, on every shard.
            kept = [key for key in KEYS if reader.peek(key) is not None]
            assert not kept, (round_, kept)
            assert all(read(reader, key, truth) == round_ + 1 for key in KEYS)
    finally:
        reader.close()
        writer.close()


@pytest.mark.parametrize("how", ["killed", "manual"])
def test_readers_and_a_writer_across_a_failover_never_read_stale(
    cluster: ClusterSetup, how: str
) -> None:
    """Readers on one store (one process), a writer on another, a failover of the master of
    two shards in the middle (killed, or ``CLUSTER FAILOVER``): once a bump returned, no read
    that starts afterwards returns an older value, from Redis or from the near cache. After the
    failover the near cache serves again (subscribed on the promoted master)."""
    reader, writer = stores(cluster)
    try:
        truth = dict.fromkeys(KEYS, 0)
        fill(reader, truth)
        slot = cluster.key_slot(_sharded(reader).shards[0]._base)
        returned = [0]
        stale: list[tuple[str, int, int]] = []
        reads = [0]
        done = threading.Event()

        def reading() -> None:
            while not done.is_set():
                for key in KEYS:
                    before = returned[0]
                    try:
                        value = read(reader, key, truth)
                    except Exception:  # an outage during the failover costs a bypass
                        continue
                    reads[0] += 1
                    if value < before:
                        stale.append((key, before, value))

        def failing_over() -> None:
            time.sleep(0.3)
            if how == "killed":
                cluster.fail_over(slot)
            else:
                cluster.manual_fail_over(slot)

        threads = [threading.Thread(target=reading) for _ in range(2)]
        failover = threading.Thread(target=failing_over)
        for thread in [*threads, failover]:
            thread.start()
        try:
            # The writer keeps bumping while the failover happens, and for a while after it.
            step, after = 0, 0
            deadline = time.monotonic() + 60
            while after < 30 and time.monotonic() < deadline:
                step += 1
                after += 0 if failover.is_alive() else 1
                for key in KEYS:
                    truth[key] = step
                try:
                    writer.bump([TAG])
                except Exception:
                    continue  # not returned: no promise made (the log would replay it)
                returned[0] = step
                time.sleep(0.005)
        finally:
            done.set()
            for thread in [*threads, failover]:
                thread.join(60)
        assert not stale, stale[:5]
        assert reads[0] > 200
        fill(reader, truth)  # the near cache is back: every key served from it, on every shard
    finally:
        reader.close()
        writer.close()


def _holds(cluster: ClusterSetup) -> list[bytes]:
    found: list[bytes] = []
    for port in cluster.masters_now():
        found += list(cluster.node(port).scan_iter(match="{nc:*}:hold"))
    return found


def test_a_bump_on_a_promoted_master_waits_out_the_hold(cluster: ClusterSetup) -> None:
    """The first scripts on a master that took a shard over set its hold (``_cluster.lua``):
    a bump there returns only after it (near caches still listening to the old master have
    stopped by then); later bumps do not wait."""
    reader, writer = stores(cluster)
    try:
        truth = dict.fromkeys(KEYS, 0)
        fill(reader, truth)
        writer.bump([TAG])  # waits out the holds of the first use (no server key yet)
        time.sleep(0.05)  # PTTL counts whole milliseconds
        assert not _holds(cluster)  # none left: the masters did not change since
        slot = cluster.key_slot(_sharded(reader).shards[0]._base)
        cluster.manual_fail_over(slot)
        for key in KEYS:
            truth[key] = 1
        started = time.monotonic()
        writer.bump([TAG])
        assert time.monotonic() - started >= 0.9
        assert all(read(reader, key, truth) == 1 for key in KEYS)
    finally:
        reader.close()
        writer.close()
