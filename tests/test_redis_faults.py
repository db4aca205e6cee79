"""Redis faults on a real ``redis-server`` started on a spare port for each test.

Refused (killed), hung (SIGSTOP), restarted empty, restarted from an older snapshot,
``FLUSHALL`` and ``maxmemory`` eviction. In every case: no exception reaches the caller, every
call's wait is bounded by the socket timeouts and the circuit breaker, one warning is logged per
outage, and no value older than the last acknowledged invalidation is ever returned.

No timing assertion here measures performance: the bounds are generous and only rule out hangs.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import override_settings

import freshcache
from freshcache import cached, counters, depends_on, invalidate
from freshcache.core import fetch
from freshcache.stores.redis import RedisStore
from freshcache.testing import hook
from tests.helpers import RedisServer

pytestmark = pytest.mark.redis

BREAKER = 0.5
TIMEOUT = 0.2
#: The longest one call may wait while Redis is refused or hung: a connect and a read timeout,
#: plus generous slack for a loaded machine. Only "does not hang" is asserted.
CALL_BOUND = TIMEOUT * 2 + 1.0

truth: dict[str, int] = {}


@cached
def read(name: str) -> int:
    depends_on(f"fault:{name}")
    return truth[name]


def write(name: str) -> int:
    """Change the data, then invalidate: the write is acknowledged when this returns."""
    truth[name] = truth.get(name, 0) + 1
    invalidate(f"fault:{name}")
    return truth[name]


def settings_for(server: RedisServer, **extra: Any) -> Any:
    return override_settings(
        FRESHCACHE={
            "STORE": server.url,
            "BREAKER_SECONDS": BREAKER,
            "SOCKET_TIMEOUT": TIMEOUT,
            "CONNECT_TIMEOUT": TIMEOUT,
            **extra,
        }
    )


def other_process_store(server: RedisServer) -> RedisStore:
    """Another process's view of the same Redis: a store object that saw no failure."""
    return RedisStore(
        "other",
        server.url,
        socket_timeout=TIMEOUT,
        connect_timeout=TIMEOUT,
        breaker_seconds=BREAKER,
    )


@pytest.fixture(autouse=True)
def _clean_truth() -> Iterator[None]:
    truth.clear()
    counters.reset()
    yield
    truth.clear()


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as srv:
        yield srv


@pytest.fixture
def configured(server: RedisServer) -> Iterator[RedisServer]:
    with settings_for(server):
        yield server


def unreachable_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "freshcache.stores.redis" and "is unreachable" in r.getMessage()
    ]


def hammer(
    seconds: float, step: Callable[[int], None], max_calls: int = 5000
) -> tuple[int, float, float]:
    """Call ``step(i)`` for ``seconds``, at most ``max_calls`` times: (count, total, worst)."""
    start = time.monotonic()
    worst = 0.0
    n = 0
    while n < max_calls and time.monotonic() - start < seconds:
        t0 = time.monotonic()
        step(n)
        worst = max(worst, time.monotonic() - t0)
        n += 1
        time.sleep(0.002)
    return n, time.monotonic() - start, worst


def test_server_answers_normally(configured: RedisServer) -> None:
    truth["a"] = 1
    assert read.outcome("a").stored is True
    assert read.outcome("a").hit is True
    write("a")
    assert read("a") == 2


def test_refused_serves_uncached_with_bounded_waits_and_one_warning(
    configured: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="freshcache.stores.redis")
    truth["a"] = 1
    assert read("a") == 1
    assert read.outcome("a").hit is True
    configured.kill()

    def step(i: int) -> None:
        if i % 10 == 5:
            write("a")  # the bump fails and is remembered; no exception
        out = read.outcome("a")
        assert out.value == truth["a"]
        assert out.hit is False

    # Long enough to span several breaker periods: each reopening retries Redis once.
    n, total, worst = hammer(4 * BREAKER, step)
    assert n > 50
    assert worst < CALL_BOUND
    assert total < 4 * BREAKER + CALL_BOUND
    [warning] = unreachable_warnings(caplog)  # one per outage, not one per call
    assert re.fullmatch(
        r"freshcache store 'default' is unreachable \(.+\); "
        r"computing uncached for the next 0\.5s",
        warning,
    )
    assert freshcache.stats()["hits"] == 1
    assert freshcache.stats()["bump_failures"] > 0

    configured.start()  # back, empty
    deadline = time.monotonic() + 5
    while True:
        # Until a read stores again (or hits what a read in this loop stored: checking only
        # `stored` looped forever when the loop's own read had stored the entry).
        out = read.outcome("a")
        assert out.value == truth["a"]
        if out.stored or out.hit:
            break
        assert time.monotonic() < deadline, f"the store never came back: {out}"
        time.sleep(0.05)
    assert read.outcome("a").hit is True
    assert read("a") == truth["a"]
    assert any("is reachable again" in r.getMessage() for r in caplog.records)


def test_hung_server_bounded_waits_then_recovers(
    configured: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="freshcache.stores.redis")
    truth["a"] = 1
    assert read("a") == 1
    configured.pause()
    try:

        def step(i: int) -> None:
            if i % 10 == 5:
                write("a")
            assert read("a") == truth["a"]

        n, total, worst = hammer(4 * BREAKER, step)
        assert n > 20
        assert worst < CALL_BOUND
        assert total < 4 * BREAKER + CALL_BOUND
        assert len(unreachable_warnings(caplog)) == 1
    finally:
        configured.resume()
    deadline = time.monotonic() + 5
    while not read.outcome("a").hit:
        assert read("a") == truth["a"]
        assert time.monotonic() < deadline, f"the store never came back: {read.outcome('a')}"
        time.sleep(0.05)
    assert read("a") == truth["a"]
    write("a")
    assert read("a") == truth["a"]


def test_restarted_empty_never_serves_the_old_value(configured: RedisServer) -> None:
    truth["a"] = 1
    assert read.outcome("a").stored is True
    configured.kill()
    write("a")  # lost: Redis is down
    configured.start()  # empty
    deadline = time.monotonic() + 5
    while True:
        out = read.outcome("a")
        assert out.value == 2
        if out.hit:
            break
        assert time.monotonic() < deadline, "never cached again"
        time.sleep(0.05)


def _cache_v1_on_both(other: RedisStore) -> None:
    """Cache version 1 of "a" under one key, seen as a hit by both stores."""
    truth["a"] = 1
    assert fetch("lost:a", lambda: read_through("a")).stored is True
    assert fetch("lost:a", lambda: read_through("a"), store=other).hit is True


def read_through(name: str) -> int:
    depends_on(f"fault:{name}")
    return truth[name]


def test_lost_invalidation_is_replayed_before_serving(configured: RedisServer) -> None:
    """Invalidate while Redis is down; Redis comes back with the old data: never serve it."""
    other = other_process_store(configured)
    try:
        _cache_v1_on_both(other)
        configured.save()
        configured.kill()
        assert write("a") == 2  # acknowledged, though the bump could not reach Redis
        assert freshcache.store().pending_repair  # type: ignore[attr-defined]
        configured.start()  # with the old entry and the old tag version
        assert configured.client().exists("{fc}:seq") == 1
        for _ in range(100):
            assert fetch("lost:a", lambda: read_through("a")).value == 2
            time.sleep(0.01)
    finally:
        other.close()


def test_lost_invalidation_reaches_processes_that_saw_no_failure(
    configured: RedisServer,
) -> None:
    """The failed process retries in the background, so others stop serving the old value."""
    other = other_process_store(configured)
    try:
        _cache_v1_on_both(other)
        configured.save()
        configured.kill()
        write("a")
        configured.start()
        recovered = time.monotonic()
        # Only the other process reads from now on: this one must repair on its own.
        deadline = recovered + 2 * BREAKER + 1.0
        while True:
            out = fetch("lost:a", lambda: read_through("a"), store=other)
            if out.value == 2:
                break
            assert time.monotonic() < deadline, "the other process kept serving the old value"
            time.sleep(0.01)
        for _ in range(50):
            assert fetch("lost:a", lambda: read_through("a"), store=other).value == 2
            time.sleep(0.01)
    finally:
        other.close()


def test_lost_invalidation_while_hung_is_replayed_on_resume(configured: RedisServer) -> None:
    """SIGSTOP keeps the data; the bump is made while the breaker is open, so nothing is sent."""
    other = other_process_store(configured)
    try:
        _cache_v1_on_both(other)
        configured.pause()
        try:
            truth["b"] = 0
            read("b")  # times out: the breaker opens
            assert freshcache.store().pending_repair is False  # type: ignore[attr-defined]
            write("a")  # breaker open: the bump is not even sent, only remembered
            assert freshcache.store().pending_repair  # type: ignore[attr-defined]
        finally:
            configured.resume()
        # This process: the first read after recovery already sees the new value.
        assert fetch("lost:a", lambda: read_through("a")).value == 2
        # The other process converges within the background retry period.
        deadline = time.monotonic() + 2 * BREAKER + 1.0
        while fetch("lost:a", lambda: read_through("a"), store=other).value != 2:
            assert time.monotonic() < deadline, "the other process kept serving the old value"
            time.sleep(0.01)
    finally:
        other.close()


def test_restart_from_an_older_snapshot_never_serves_stale(configured: RedisServer) -> None:
    """RDB rollback: Redis restarts with data older than a bump that *succeeded*.

    Nobody remembers a successful bump, so the tag version and the sequence go back in time and
    the entry the bump invalidated validates again, unless the store notices the restart.
    """
    other = other_process_store(configured)
    try:
        _cache_v1_on_both(other)
        configured.save()  # the snapshot holds version 1 and its entry
        assert write("a") == 2  # reached Redis
        assert fetch("lost:a", lambda: read_through("a")).value == 2
        configured.kill()  # dies before the next save: the bump is lost with it
        configured.start()
        deadline = time.monotonic() + 2 * BREAKER + 1.0
        while time.monotonic() < deadline:
            assert fetch("lost:a", lambda: read_through("a")).value == 2
            assert fetch("lost:a", lambda: read_through("a"), store=other).value == 2
            time.sleep(0.01)
    finally:
        other.close()


def test_flushall_mid_run_only_misses(configured: RedisServer) -> None:
    truth["a"] = 1
    client = configured.client()
    for round_ in range(20):
        if round_ % 3 == 0:
            write("a")
        assert read("a") == truth["a"]
        assert read.outcome("a").value == truth["a"]
        if round_ % 4 == 1:
            client.flushall()
            assert read.outcome("a").hit is False
            assert read("a") == truth["a"]
    assert read.outcome("a").hit is True


def test_flushall_during_a_computation_does_not_store_it(configured: RedisServer) -> None:
    """Snapshot, FLUSHALL, write, store: the write's bump lands in a new epoch; refuse."""
    truth["a"] = 1
    client = configured.client()
    done = False

    def flush_and_write(**_: object) -> None:
        nonlocal done
        if not done:
            done = True
            client.flushall()
            write("a")

    with hook("after_compute", flush_and_write):
        out = read.outcome("a")
    assert (out.value, out.stored) == (1, False)
    assert read("a") == 2


def test_eviction_under_maxmemory_never_stale() -> None:
    """``maxmemory 2mb`` + ``allkeys-lru``: entries, tag versions, even the sequence are evicted."""
    with (
        RedisServer("--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru") as srv,
        settings_for(srv),
    ):
        rng = random.Random(1234)
        names = [f"k{i}" for i in range(20)]
        for name in names:
            truth[name] = 0
        filler = "x" * 8000

        @cached
        def bulky(n: int) -> str:
            depends_on(f"bulky:{n}")
            return filler

        reads = hits = 0
        start = time.monotonic()
        for step in range(3000):
            if time.monotonic() - start > 15:
                break
            roll = rng.random()
            if roll < 0.15:
                write(rng.choice(names))
            elif roll < 0.45:
                assert bulky(step) == filler  # a unique entry: memory pressure
            else:
                name = rng.choice(names)
                out = read.outcome(name)
                assert out.value == truth[name], f"stale read of {name} at step {step}"
                reads += 1
                hits += out.hit
        used = srv.client().info("memory")
        evicted = srv.client().info("stats")["evicted_keys"]
        assert used["used_memory"] <= 3 * 1024 * 1024
        assert evicted > 0, "the test never made Redis evict anything"
        assert reads > 500
        assert hits > 0  # the cache still works under pressure
        assert freshcache.stats()["store_errors"] == 0


def test_concurrent_threads_during_an_outage(configured: RedisServer) -> None:
    """Several threads hit a killed Redis at once: none raises, none waits unboundedly."""
    truth["a"] = 1
    read("a")
    configured.kill()
    errors: list[BaseException] = []
    worst: list[float] = []

    def reader() -> None:
        try:
            for _ in range(200):
                t0 = time.monotonic()
                assert read("a") == truth["a"]
                worst.append(time.monotonic() - t0)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert max(worst) < CALL_BOUND


def test_new_processes_keep_the_cache_warm(configured: RedisServer) -> None:
    """The restart fence starts a new epoch only for a new server, not for a new client."""
    truth["a"] = 1
    assert fetch("warm:a", lambda: read_through("a")).stored is True
    for _ in range(3):
        other = other_process_store(configured)  # a fresh connection pool: a new process
        try:
            assert fetch("warm:a", lambda: read_through("a"), store=other).hit is True
        finally:
            other.close()
    assert fetch("warm:a", lambda: read_through("a")).hit is True
