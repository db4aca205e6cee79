"""The behavioural contract every store keeps, run against memory, database and Redis.

Each test observes what a user can: how often a computation ran, what it returned, and the
per-process counters. Races are forced with the protocol's hook points, not hoped for.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from django.db import connection, transaction

import freshcache
from freshcache import cached, depends_on, invalidate
from freshcache.core import HIT_BEFORE_LOG, fetch
from freshcache.stores import Store
from freshcache.stores.near import NearStore
from freshcache.testing import hook
from tests.conftest import REDIS_TEST_PREFIX, mark_store_kind
from tests.testapp.models import Item

calls: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    calls.clear()


@pytest.fixture(
    params=["memory", "database", "redis", "redis-near", "redis-cluster", "redis-cluster-near"]
)
def store_kind(request: pytest.FixtureRequest) -> str:
    """The stores, Redis with a near cache in front, and Redis on a cluster of 3 masters and
    3 replicas, with and without a near cache: the contract holds for them too."""
    return mark_store_kind(request)


@cached
def tagged(tag: str, n: int = 0) -> str:
    calls[f"tagged:{tag}:{n}"] += 1
    depends_on(tag)
    return f"{tag}-{n}-{calls[f'tagged:{tag}:{n}']}"


@cached
def item_name(item: Item) -> str:
    calls["item_name"] += 1
    return item.name


@cached
def item_names() -> list[str]:
    calls["item_names"] += 1
    depends_on(Item)
    return sorted(i.name for i in Item.objects.all())


@cached
def inner(tag: str) -> str:
    calls["inner"] += 1
    depends_on(tag)
    return f"inner:{calls['inner']}"


@cached
def outer(tag: str) -> str:
    calls["outer"] += 1
    return f"outer({inner(tag)})"


def test_miss_then_hit(fresh_store: object) -> None:
    first = tagged.outcome("a")
    second = tagged.outcome("a")
    assert (first.hit, first.stored, second.hit) == (False, True, True)
    assert first.value == second.value == "a-0-1"
    assert calls["tagged:a:0"] == 1
    assert freshcache.stats()["hits"] == 1
    assert freshcache.stats()["misses"] == 1


def test_an_entry_without_tags_is_a_hit(fresh_store: freshcache.stores.Store) -> None:
    """A computation that reads nothing depends on nothing: stored once, then always a hit (the
    database store once wrote its versions text for zero tags in a form it could not read)."""
    out = fetch("contract:no-tags", lambda: "constant", store=fresh_store)
    assert (out.stored, out.tags) == (True, frozenset())
    again = fetch("contract:no-tags", lambda: "recomputed", store=fresh_store)
    assert (again.hit, again.value) == (True, "constant")


def test_arguments_make_distinct_entries(fresh_store: object) -> None:
    assert tagged("a", 1) != tagged("a", 2)
    assert tagged("a", n=1) == tagged("a", 1)  # bound arguments: one entry
    assert calls["tagged:a:1"] == 1


def test_free_form_tag_invalidation(fresh_store: object) -> None:
    tagged("a")
    tagged("b")
    invalidate("a")
    assert tagged.outcome("a").hit is False
    assert tagged.outcome("b").hit is True
    assert tagged("a") == "a-0-2"


def test_instance_tag_invalidation(fresh_store: object) -> None:
    Item.objects.bulk_create([Item(name="one"), Item(name="two")])
    one, two = Item.objects.order_by("pk")  # loaded: created ones count as of their INSERT
    assert item_name(one) == "one"
    item_name(two)
    Item.objects.filter(pk=one.pk).update(name="uno")
    one.refresh_from_db()
    invalidate(one)
    assert item_name(one) == "uno"
    deadline, refused = time.monotonic() + 10, 0
    while True:  # a hit is refused while this process's relay holds the update's log row
        again = item_name.outcome(two)
        if again.hit or again.reason != HIT_BEFORE_LOG or time.monotonic() > deadline:
            break
        refused += 1  # each refused hit ran the function once more
        time.sleep(0.01)
    assert again.hit is True, again.reason
    assert calls["item_name"] == 3 + refused


def test_table_tag_invalidation(fresh_store: object) -> None:
    Item.objects.create(name="one")
    assert item_names() == ["one"]
    Item.objects.create(name="two")
    invalidate(Item)
    assert item_names() == ["one", "two"]
    assert calls["item_names"] == 2


def test_nested_tags_bubble_up(fresh_store: object) -> None:
    assert outer("x") == "outer(inner:1)"
    assert outer.outcome("x").hit is True
    invalidate("x")
    assert outer("x") == "outer(inner:2)"
    assert calls["outer"] == 2


def test_nested_tags_bubble_up_from_an_inner_hit(fresh_store: object) -> None:
    inner("y")  # cached first, on its own
    out = outer.outcome("y")
    assert out.value == "outer(inner:1)"
    assert "y" in out.tags  # the inner hit's tags reached the outer entry
    invalidate("y")
    assert outer("y") == "outer(inner:2)"


def test_bump_is_deferred_to_commit(fresh_store: object) -> None:
    tagged("a")
    with transaction.atomic():
        invalidate("a")
        # Not bumped yet for others; inside the dirty transaction nothing is served from cache.
        assert tagged.outcome("a").reason == "transaction has written"
    assert tagged.outcome("a").hit is False


def test_no_bump_on_rollback(fresh_store: object) -> None:
    tagged("a")

    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        invalidate("a")
        raise Rollback
    assert tagged.outcome("a").hit is True


def test_no_bump_on_savepoint_rollback(fresh_store: object) -> None:
    tagged("a")
    tagged("b")
    with transaction.atomic():
        invalidate("b")
        try:
            with transaction.atomic():  # a savepoint
                invalidate("a")
                raise ValueError
        except ValueError:
            pass
    assert tagged.outcome("a").hit is True
    assert tagged.outcome("b").hit is False


def test_writing_transaction_neither_reads_nor_stores(fresh_store: object) -> None:
    with transaction.atomic():
        invalidate("unrelated")
        out = tagged.outcome("a")
        assert (out.hit, out.stored) == (False, False)
    assert tagged.outcome("a").hit is False  # nothing was stored from inside
    assert tagged.outcome("a").hit is True


def test_stale_set_race_is_refused(fresh_store: object) -> None:
    """A bump between the snapshot and the store: the old value must not be stored."""
    with hook("after_snapshot", lambda **_: invalidate("a") if calls["tagged:a:0"] == 0 else None):
        out = tagged.outcome("a")
    assert (out.hit, out.stored, out.reason) == (
        False,
        False,
        "a dependency changed while computing",
    )
    assert freshcache.stats()["stores_skipped_race"] == 1
    assert tagged.outcome("a").hit is False
    assert tagged.outcome("a").hit is True


def test_stale_set_race_with_a_real_writer_thread(fresh_store: object) -> None:
    """Reader pauses after reading the data; a writer commits and bumps; reader then stores."""
    item = Item.objects.create(name="old")
    read_done, write_done = threading.Event(), threading.Event()

    @cached
    def name_of(pk: int) -> str:
        depends_on(f"testapp.item:{pk}")
        value = Item.objects.get(pk=pk).name
        read_done.set()
        assert write_done.wait(10)
        return value

    def writer() -> None:
        assert read_done.wait(10)
        with transaction.atomic():
            Item.objects.filter(pk=item.pk).update(name="new")
            invalidate(f"testapp.item:{item.pk}")
        write_done.set()
        connection.close()

    thread = threading.Thread(target=writer)
    thread.start()
    out = name_of.outcome(item.pk)
    thread.join(10)
    assert out.value == "old"  # it read before the write: fine to serve, not to store
    assert out.stored is False
    assert name_of(item.pk) == "new"


def test_bump_while_nothing_changed_stores_new_tags_at_once(fresh_store: object) -> None:
    out = tagged.outcome("never-seen-before")
    assert out.stored is True


def test_lost_tag_versions_only_cause_misses(fresh_store: object, store_kind: str) -> None:
    tagged("a")
    forget_tag_versions(store_kind)
    out = tagged.outcome("a")
    assert out.hit is False
    assert tagged.outcome("a").hit is True


def test_corrupt_entry_is_a_miss(fresh_store: object, store_kind: str) -> None:
    tagged("a")
    corrupt_entries(store_kind)
    out = tagged.outcome("a")
    assert out.hit is False
    assert out.value == "a-0-2"
    assert freshcache.stats()["corrupt_entries"] == 1


def test_clear_makes_everything_miss(fresh_store: freshcache.stores.Store) -> None:
    tagged("a")
    fresh_store.clear()
    assert tagged.outcome("a").hit is False


def test_marked_names_only_rows_whose_bump_was_made(
    fresh_store: freshcache.stores.Store, store_kind: str
) -> None:
    """``Store.marked``: a relay skips the rows it names, so it may name only rows bumped (by a
    writer's bump with marks, or an ``apply``) and forgotten by none; a store that cannot tell
    names none. The memory and database stores tell."""
    one, two, three = 2_000_000_101, 2_000_000_102, 2_000_000_103
    assert fresh_store.marked([one, two, three]) == frozenset()
    fresh_store.bump(["contract:marked"], [one])
    assert fresh_store.apply([(two, ["contract:marked"])]) == 1
    known = fresh_store.marked([one, two, three])
    assert known <= {one, two}
    if store_kind in ("memory", "database"):
        assert known == {one, two}
    fresh_store.forget([one, two])
    if store_kind in ("memory", "database"):
        assert fresh_store.marked([one, two]) == frozenset()  # forgotten: applied again


async def test_async_cached_function(fresh_store: object) -> None:
    @cached
    async def greet(name: str) -> str:
        calls["greet"] += 1
        depends_on(f"person:{name}")
        return f"hello {name} #{calls['greet']}"

    assert await greet("ann") == "hello ann #1"
    assert (await greet.outcome("ann")).hit is True
    from asgiref.sync import sync_to_async

    await sync_to_async(invalidate)("person:ann")
    assert await greet("ann") == "hello ann #2"


def test_unkeyable_argument_names_the_argument(fresh_store: object) -> None:
    @cached
    def f(limit: int, things: object) -> int:
        return limit

    with pytest.raises(TypeError, match=r"argument 'things' cannot be part of a cache key"):
        f(3, object())
    with pytest.raises(TypeError, match=r"pass the values you filter on instead of a queryset"):
        f(3, Item.objects.all())


@pytest.mark.postgres
def test_repeatable_read_snapshot_is_not_stored(fresh_store: object) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("isolation levels are a PostgreSQL test")
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        out = tagged.outcome("rr")
    assert out.stored is False
    assert out.reason == "transaction snapshot predates the computation"


# -- helpers that destroy metadata the way eviction or a flush would --------------------------


def forget_tag_versions(kind: str) -> None:
    store = freshcache.store()
    _forget_near_copies(store)
    if kind == "memory":
        store._tags.clear()  # type: ignore[attr-defined]
    elif kind == "database":
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM freshcache_tag")
    else:
        client = store._client  # type: ignore[attr-defined]
        keys = list(client.scan_iter(match=_base(kind) + ":t:*"))
        if keys:
            client.delete(*keys)


def _base(kind: str) -> str:
    """The hash tag of the test store's keys, as a pattern (every shard's on a cluster)."""
    return "{" + REDIS_TEST_PREFIX + (":*}" if kind.startswith("redis-cluster") else "}")


def _forget_near_copies(store: object) -> None:
    """Tampering with Redis is no bump: a near cache keeps its (valid) copies. Empty it, as a
    new process would have it, so the lookup sees what is in Redis."""
    if isinstance(store, NearStore):
        store.near.flush()


def corrupt_entries(kind: str) -> None:
    store = freshcache.store()
    _forget_near_copies(store)
    if kind == "memory":
        entries = store._entries  # type: ignore[attr-defined]
        for key, (payload, versions, expires) in list(entries.items()):
            entries[key] = (payload[:-3], versions, expires)
    elif kind == "database":
        with connection.cursor() as cursor:
            cursor.execute("UPDATE freshcache_entry SET payload = %s", [b"fc1garbage"])
    else:
        client = store._client  # type: ignore[attr-defined]
        for key in client.scan_iter(match=_base(kind) + ":e:*"):
            client.set(key, client.get(key)[:-3])


def test_entry_with_thousands_of_tags(fresh_store: object) -> None:
    @cached
    def wide() -> int:
        calls["wide"] += 1
        depends_on(*(f"row:{i}" for i in range(3000)))
        return calls["wide"]

    assert wide.outcome().stored is True
    out = wide.outcome()
    assert out.hit is True
    assert len(out.tags) == 3000
    invalidate("row:2999")
    assert wide() == 2
    assert wide.outcome().hit is True
    invalidate("row:300")  # Redis reads tag versions in batches (lookup.lua): one in the middle
    assert wide() == 3


# -- leases (single flight, contract point 6) --------------------------------------------------


def test_a_lease_has_one_holder_until_released(fresh_store: Store) -> None:
    token = fresh_store.acquire("lease-a", 5)
    assert token
    assert fresh_store.acquire("lease-a", 5) is None
    assert fresh_store.acquire("lease-b", 5), "a lease covers one key"
    fresh_store.release("lease-a", "0123456789abcdef")  # not the holder's token: no effect
    assert fresh_store.acquire("lease-a", 5) is None
    fresh_store.release("lease-a", token)
    again = fresh_store.acquire("lease-a", 5)
    assert again and again != token


def test_a_lease_ends_with_its_time_to_live(fresh_store: Store) -> None:
    first = fresh_store.acquire("lease-ttl", 0.3)
    assert first and fresh_store.acquire("lease-ttl", 0.3) is None
    time.sleep(0.45)
    second = fresh_store.acquire("lease-ttl", 5)
    assert second, "a dead holder blocks nobody after its lease's time to live"
    fresh_store.release("lease-ttl", first)  # the late holder must not free the new lease
    assert fresh_store.acquire("lease-ttl", 5) is None


def test_one_of_many_threads_gets_the_lease(fresh_store: Store) -> None:
    barrier = threading.Barrier(8)
    got: list[str | None] = []

    def take() -> None:
        barrier.wait()
        got.append(fresh_store.acquire("lease-race", 5))
        connection.close()

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(got) == 8 and sum(1 for t in got if t) == 1, got


def test_clear_drops_leases(fresh_store: Store) -> None:
    assert fresh_store.acquire("lease-clear", 5)
    fresh_store.clear()
    assert fresh_store.acquire("lease-clear", 5)
