"""Single flight (issue 9, item 6): one computation per key at a time, waiters stay fresh.

Run on every store. Threads stand for concurrent requests (each with its own database
connection); the computations count themselves and block on events, so every interleaving
below is forced, not hoped for.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings

import freshcache
from freshcache import counters, depends_on, invalidate
from freshcache.core import Outcome, afetch, fetch, store_key
from freshcache.scope import mark_uncacheable
from freshcache.stores import Store, StoreUnavailable
from freshcache.stores.memory import MemoryStore
from tests.conftest import store_url

runs: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _reset_runs() -> None:
    runs.clear()


@contextmanager
def leases(store_kind: str, **settings: Any) -> Iterator[Store]:
    """The store of ``store_kind`` with lease settings (``LEASE_SECONDS=...``) applied."""
    with override_settings(FRESHCACHE={"STORE": store_url(store_kind), **settings}):
        yield freshcache.store()


def in_threads(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """``fn(i)`` in ``n`` threads started together; their results (an exception re-raised)."""
    fetch("fl:warm-up", lambda: None)  # the relay's first drain (reads bypass until it is done)
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def body(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except BaseException as exc:  # handed to the test thread
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def slow(name: str, seconds: float = 0.2, value: Any = None) -> Callable[[], Any]:
    def compute() -> Any:
        runs[name] += 1
        depends_on(f"flight:{name}")
        time.sleep(seconds)
        return value if value is not None else f"{name}-{runs[name]}"

    return compute


def test_concurrent_misses_compute_once(fresh_store: Store) -> None:
    outcomes: list[Outcome[Any]] = in_threads(8, lambda i: fetch("fl:once", slow("once")))
    assert runs["once"] == 1
    assert {o.value for o in outcomes} == {"once-1"}
    assert sum(o.hit for o in outcomes) == 7, "a value served after waiting is a hit"
    stats = freshcache.stats()
    assert stats["lease_waits"] == 7 and stats["lease_timeouts"] == 0


def test_zero_turns_single_flight_off(store_kind: str, fresh_store: Store) -> None:
    with leases(store_kind, LEASE_SECONDS=0):
        in_threads(4, lambda i: fetch("fl:off", slow("off")))
    assert runs["off"] == 4
    assert freshcache.stats()["lease_waits"] == 0


def test_a_dead_holder_blocks_only_until_its_lease_ends(
    store_kind: str, fresh_store: Store
) -> None:
    with leases(store_kind, LEASE_WAIT_SECONDS=5) as store:
        fetch("fl:warm-up", lambda: None)  # the relay's first drain
        # A holder that took the lease and died (kill -9): nobody releases it.
        assert store.acquire(store_key("fl:dead"), 0.5)
        started = time.monotonic()
        outcome = fetch("fl:dead", slow("dead", 0))
        waited = time.monotonic() - started
    assert outcome.value == "dead-1" and outcome.stored
    assert 0.4 < waited < 2.0, waited


def test_waiters_give_up_after_the_wait_bound(store_kind: str, fresh_store: Store) -> None:
    with leases(store_kind, LEASE_WAIT_SECONDS=0.3) as store:
        fetch("fl:warm-up", lambda: None)
        assert store.acquire(store_key("fl:bound"), 30)
        started = time.monotonic()
        outcome = fetch("fl:bound", slow("bound", 0))
        waited = time.monotonic() - started
    assert outcome.value == "bound-1"
    assert 0.25 < waited < 1.5, waited
    assert freshcache.stats()["lease_timeouts"] == 1


def test_a_holder_that_stores_nothing_lets_waiters_compute_at_once(fresh_store: Store) -> None:
    def compute() -> str:
        runs["uncacheable"] += 1
        time.sleep(0.2)
        mark_uncacheable("set a cookie")
        return "page"

    started = time.monotonic()
    in_threads(6, lambda i: fetch("fl:uncacheable", compute))
    elapsed = time.monotonic() - started
    # One holder, then every waiter at once: not a queue of six renders, nor a 5 s wait.
    assert runs["uncacheable"] == 6
    assert elapsed < 1.2, elapsed


def test_a_holder_that_raises_releases_its_lease(fresh_store: Store) -> None:
    def boom() -> str:
        raise RuntimeError("render failed")

    with pytest.raises(RuntimeError):
        fetch("fl:raise", boom)
    started = time.monotonic()
    assert fetch("fl:raise", slow("raise", 0)).value == "raise-1"
    assert time.monotonic() - started < 0.2, "the next request did not wait for a dead lease"
    assert freshcache.stats()["lease_waits"] == 0


def test_a_waiter_never_takes_a_value_older_than_its_own_start(fresh_store: Store) -> None:
    """The holder reads version 1; a write (version 2) returns; a request starting after it
    waits for the holder, and must not be served the holder's version 1."""
    data = {"v": 1}
    read = threading.Event()
    go = threading.Event()

    def holder_compute() -> int:
        depends_on("flight:data")
        value = data["v"]
        read.set()
        assert go.wait(10)
        return value

    def waiter_compute() -> int:
        depends_on("flight:data")
        return data["v"]

    def request(i: int) -> Outcome[int]:
        if i == 0:
            return fetch("fl:fresh", holder_compute)
        assert read.wait(10)
        data["v"] = 2
        invalidate("flight:data")  # the write has returned
        started = threading.Thread(target=lambda: (time.sleep(0.15), go.set()))
        started.start()  # the holder stores once the waiter is waiting
        return fetch("fl:fresh", waiter_compute)

    holder, waiter = in_threads(2, request)
    assert holder.value == 1 and not holder.stored, "the store's race guard refused it"
    assert waiter.value == 2, "the waiter was served a value older than its own start"
    assert freshcache.stats()["lease_waits"] == 1
    assert fetch("fl:fresh", waiter_compute).value == 2


class FailingLeases(MemoryStore):
    """The memory store, whose leases fail as a store that is down would."""

    def acquire(self, key: str, ttl: float) -> str | None:
        raise StoreUnavailable("leases are down")


@pytest.mark.django_db(transaction=True)
def test_lease_errors_mean_no_single_flight_never_an_error() -> None:
    store = FailingLeases("failing", "memory://")
    outcomes = in_threads(3, lambda i: fetch("fl:down", slow("down", 0.1), store=store))
    assert runs["down"] == 3 and all(not o.hit for o in outcomes)
    assert fetch("fl:down", slow("down", 0), store=store).hit


@pytest.mark.django_db(transaction=True)
def test_async_waiters_sleep_without_blocking_the_loop() -> None:
    async def compute() -> str:
        runs["async"] += 1
        depends_on("flight:async")
        await asyncio.sleep(0.2)
        return "async-page"

    async def main() -> tuple[list[Outcome[str]], int]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        tick_task = asyncio.create_task(ticker())
        outcomes = await asyncio.gather(*(afetch("fl:async", compute) for _ in range(50)))
        done.set()
        await tick_task
        return list(outcomes), ticks

    with override_settings(FRESHCACHE={"STORE": "memory://"}):
        freshcache.store().clear()
        counters.reset()
        outcomes, ticks = asyncio.run(main())
    assert runs["async"] == 1
    assert {o.value for o in outcomes} == {"async-page"}
    assert sum(o.hit for o in outcomes) == 49
    assert ticks >= 10, "the event loop was blocked while requests waited"


@pytest.mark.redis
def test_garbage_under_a_redis_lease_key_never_blocks_or_raises(transactional_db: None) -> None:
    with override_settings(FRESHCACHE={"STORE": store_url("redis")}):
        store = freshcache.store()
        client = store._client  # type: ignore[attr-defined]
        key = store._lease_prefix + "garbage"  # type: ignore[attr-defined]
        try:
            for put in (
                lambda: client.set(key, "not a token"),
                lambda: client.set(key, "0123456789abcdef"),  # a token without a lease's TTL
                lambda: client.set(key, "0123456789abcdef", px=10 * 3600 * 1000),  # 10 hours
                lambda: client.hset(key, "a", "b"),
                lambda: client.rpush(key, "x"),
            ):
                client.delete(key)
                put()
                token = store.acquire("garbage", 5)
                assert token, "garbage is replaced, never trusted to block"
                client.delete(key)
                put()
                store.release("garbage", token)  # another value: left alone, no error
        finally:
            client.delete(key)


@pytest.mark.postgres
def test_garbage_in_a_database_lease_row_never_blocks(transactional_db: None) -> None:
    with leases("database") as store:
        for expires in (1e15, float("nan")):
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM freshcache_lease")
                cursor.execute(
                    "INSERT INTO freshcache_lease (key, token, expires) VALUES ('g', 'x', %s)",
                    [expires],
                )
            assert store.acquire("g", 5), expires
