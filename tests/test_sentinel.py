"""Redis Sentinel (issue 14 item 2): the store follows a failover, and a promoted replica that
missed bumps its master acknowledged never serves what those bumps invalidated.

A real primary, replica and three sentinels on loopback (``tests/helpers/redis_sentinel.py``).
Replication is asynchronous: :meth:`SentinelSetup.lose_next_writes` makes the replica miss the
next bumps for certain (it is stopped and the primary drops its link), the primary is then
killed and the sentinels promote the replica. Each test checks first that the promoted server
really lacks the bump (so that, without the fence, the entry would validate), then that nothing
built before the write is served, by this process, by another one, or from a near cache.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

import freshcache
from freshcache import cached, depends_on, invalidate
from freshcache.stores import from_url
from freshcache.stores.near import NearStore
from freshcache.stores.redis import RedisStore
from tests.helpers.redis_sentinel import SERVICE, SentinelSetup
from tests.helpers.relay import relay_once_applied
from tests.testapp.models import Item

pytestmark = pytest.mark.redis

TIMEOUT = 0.2
BREAKER = 0.3

truth: dict[str, int] = {}


@cached
def read(name: str) -> int:
    depends_on(f"sentinel:{name}")
    return truth[name]


def write(name: str) -> int:
    """Change the data, then invalidate: acknowledged when this returns."""
    truth[name] = truth.get(name, 0) + 1
    invalidate(f"sentinel:{name}")
    return truth[name]


@pytest.fixture
def setup() -> Iterator[SentinelSetup]:
    truth.clear()
    with SentinelSetup() as running:
        yield running
    truth.clear()


def configured(setup: SentinelSetup, query: str = "") -> Any:
    return override_settings(
        FRESHCACHE={
            "STORE": setup.url(query=query),
            "SOCKET_TIMEOUT": TIMEOUT,
            "CONNECT_TIMEOUT": TIMEOUT,
            "BREAKER_SECONDS": BREAKER,
        }
    )


def tag_version(client: Any, tag: str) -> bytes | None:
    return client.get(f"{{fc}}:t:{tag}")


def read_until_stored(name: str, seconds: float = 15.0) -> list[int]:
    """Read ``name`` until a read stores or hits (the store is back); every value read."""
    return until_stored(lambda: read.outcome(name), seconds)


def until_stored(outcome: Any, seconds: float = 15.0) -> list[Any]:
    """Call ``outcome()`` until it stores or hits; the value of each call."""
    seen = []
    deadline = time.monotonic() + seconds
    while True:
        out = outcome()
        seen.append(out.value)
        if out.stored or out.hit:
            return seen
        assert time.monotonic() < deadline, f"the store never came back after the failover: {out}"
        time.sleep(0.02)


def test_the_url_names_sentinels_a_service_and_a_database() -> None:
    store = from_url("s", "redis+sentinel://127.0.0.1:1,127.0.0.1/mymaster/3?prefix=x")
    assert isinstance(store, RedisStore)
    kwargs = store._client.connection_pool.connection_kwargs
    assert kwargs["db"] == 3
    manager, service, _ = store._client._freshcache_sentinel
    assert service == "mymaster"
    ports = [s.connection_pool.connection_kwargs["port"] for s in manager.sentinels]
    assert ports == [1, 26379]  # the default sentinel port when none is given
    store.close()
    guide = "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/mymaster/0?prefix=site"
    readme = "redis+sentinel://s1:26379,s2:26379,s3:26379/mymaster/0"
    for shown in (guide, readme):  # docs/scaling.md's and the README's, as written
        built = from_url("s", shown)
        assert isinstance(built, RedisStore)
        built.close()
    for url, message in (
        ("redis+sentinel://127.0.0.1:26379", "names the master's service"),
        ("redis+sentinel://127.0.0.1:26379/svc/zero", "must be a number"),
        ("redis+sentinel://127.0.0.1:port/svc", "sentinel port must be a number"),
        ("redis+sentinel://127.0.0.1/svc?db=2", "unknown option(s) db"),
        ("redis+sentinel://127.0.0.1/svc?sentinel_check=0", "sentinel_check must be a number"),
        ("redis+sentinel://127.0.0.1/svc?sentinel_check=soon", "could not convert"),
    ):
        with pytest.raises((ValueError, ImproperlyConfigured), match=re.escape(message)):
            from_url("s", url)


def test_the_store_follows_a_failover_and_a_lost_bump_serves_nothing_stale(
    setup: SentinelSetup,
) -> None:
    with configured(setup):
        truth["a"] = 1
        assert read.outcome("a").stored is True
        assert read.outcome("a").hit is True
        store = freshcache.store()
        epoch = store._client.get("{fc}:epoch")
        before = tag_version(setup.primary.client(), "sentinel:a")

        setup.lose_next_writes()
        assert write("a") == 2  # acknowledged by the primary only
        assert tag_version(setup.primary.client(), "sentinel:a") != before
        setup.fail_over()
        promoted = setup.replica.client()
        # The promoted replica lacks the bump: the entry's recorded version is current there.
        assert tag_version(promoted, "sentinel:a") == before
        assert promoted.exists("{fc}:e:" + next(iter(_entry_keys(promoted))))

        seen = read_until_stored("a")
        assert set(seen) == {2}, seen  # never the value the lost bump invalidated
        assert read.outcome("a").hit is True
        assert setup.replica.client().get("{fc}:epoch") != epoch  # the fence started a new one
        other = RedisStore("other", setup.url(), socket_timeout=TIMEOUT, connect_timeout=TIMEOUT)
        try:  # another process's view, connecting after the failover
            # This process's outage replay may start a new epoch meanwhile (its relay thread
            # applies the log through the store): compare with a promoted epoch that held
            # across the other process's read.
            for _ in range(50):
                held = promoted.get("{fc}:epoch")
                seen = other._client.get("{fc}:epoch")
                if promoted.get("{fc}:epoch") == held:
                    break
                time.sleep(0.05)
            assert seen == held
        finally:
            other.close()


def _entry_keys(client: Any) -> list[str]:
    return [k.decode()[len("{fc}:e:") :] for k in client.scan_iter(match="{fc}:e:*")]


def test_a_near_cache_behind_sentinel_drops_what_a_lost_bump_invalidated(
    setup: SentinelSetup,
) -> None:
    with configured(setup, "near_cache=1mb&near_heartbeat=0.02"):
        store = freshcache.store()
        assert isinstance(store, NearStore)
        _wait_ready(store)
        truth["b"] = 1
        read("b")
        read("b")
        assert len(store.near) == 1  # in L1
        before = tag_version(setup.primary.client(), "sentinel:b")
        setup.lose_next_writes()
        assert write("b") == 2
        setup.fail_over()
        assert tag_version(setup.replica.client(), "sentinel:b") == before
        assert set(read_until_stored("b")) == {2}
        _wait_ready(store, 15)  # the channel follows the failover too: L1 is used again
        assert read.outcome("b").hit is True
        assert read("b") == 2 and len(store.near) == 1
        write("b")  # published on the new master's channel
        assert read("b") == 3


def _wait_ready(store: NearStore, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not store.channel.ready():
        assert time.monotonic() < deadline, "the invalidation channel never became healthy"
        time.sleep(0.01)


def test_readers_and_a_writer_across_a_failover_never_read_stale(setup: SentinelSetup) -> None:
    """Concurrent readers while a writer writes and the primary dies: once a write returned,
    no read that starts afterwards returns an older value."""
    with configured(setup):
        truth["c"] = 0
        read("c")
        returned = [0]
        stale: list[tuple[int, int]] = []
        reads = [0]
        done = threading.Event()

        def reader() -> None:
            while not done.is_set():
                before = returned[0]
                value = read("c")
                reads[0] += 1
                if value < before:
                    stale.append((before, value))

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for thread in threads:
            thread.start()
        try:
            for step in range(60):
                if step == 30:
                    setup.lose_next_writes()
                if step == 35:
                    setup.fail_over()
                returned[0] = write("c")
                time.sleep(0.01)
        finally:
            done.set()
            for thread in threads:
                thread.join(30)
        assert not stale, stale[:5]
        assert reads[0] > 60
        assert set(read_until_stored("c")) == {truth["c"]}


def test_service_name_is_the_sentinels(setup: SentinelSetup) -> None:
    """A service the sentinels do not monitor: every call is a bypass, never an error."""
    url = setup.url().replace(f"/{SERVICE}/", "/unknown/")
    with override_settings(FRESHCACHE={"STORE": url, "SOCKET_TIMEOUT": TIMEOUT}):
        truth["d"] = 1
        out = read.outcome("d")
        assert (out.value, out.hit, out.stored) == (1, False, False)
        assert write("d") == 2  # the write returns; its bump waits in the log
        assert read("d") == 2


@cached
def count_named(name: str) -> int:
    return Item.objects.filter(name=name).count()


@pytest.mark.postgres
def test_the_relay_applies_writes_from_outside_django_to_the_promoted_master(
    setup: SentinelSetup, transactional_db: None
) -> None:
    """Item 4: the invalidation log's relay works through Sentinel, after a failover too."""
    from tests.log.conftest import clear_log, outside_params

    clear_log()
    with configured(setup), psycopg.connect(**outside_params(), autocommit=True) as outside:
        assert count_named("out") == 0
        setup.sync()
        setup.fail_over()
        assert set(until_stored(lambda: count_named.outcome("out"))) == {0}
        outside.execute("INSERT INTO testapp_item (name, value) VALUES ('out', 0)")
        relay_once_applied()
        assert count_named("out") == 1  # the relay's bump reached the promoted master
        # A hit, once the relay has drained what failed during the failover (until then hits
        # are refused: "hit arrived while the invalidation log was not applied").
        assert set(until_stored(lambda: count_named.outcome("out"))) == {1}
        assert count_named.outcome("out").hit is True

