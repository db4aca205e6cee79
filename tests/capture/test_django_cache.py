"""Reads through Django's cache framework are dependencies; its writes invalidate them.

Every read method (sync and async) against every write method, on two configurations a user
runs: ``LocMemCache`` with the in-process store, and Django's ``RedisCache`` with the Redis store
(both shared). Observed through what a ``@cached`` function returns and whether it hit.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.db import transaction
from django.test import override_settings

from freshcache import cached, store
from freshcache.capture import django_cache
from freshcache.models import LogEntry
from freshcache.testing import hook
from tests.conftest import pytest_runtest_setup, store_url

pytestmark = pytest.mark.django_db(transaction=True)

MISSING = object()
RUN = f"dj{os.getpid()}"


def redis_cache_url() -> str:
    # Database 13: not the store's (15) nor the e2e store's (14); keys carry this run's prefix.
    return settings.REDIS_URL.rsplit("/", 1)[0] + "/13"


def locmem(name: str = "") -> dict[str, Any]:
    return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": name}


def redis_cache() -> dict[str, Any]:
    return {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": redis_cache_url(),
        "KEY_PREFIX": f"{RUN}-{uuid.uuid4().hex[:8]}",
    }


@pytest.fixture(params=["locmem+memory", "redis+redis"])
def setup(request: pytest.FixtureRequest) -> Iterator[str]:
    """A ``default`` cache and a store: locmem with memory://, or RedisCache with redis://."""
    if request.param == "redis+redis":
        request.node.add_marker(pytest.mark.redis)
        pytest_runtest_setup(request.node)
        cache_conf, store_conf = redis_cache(), store_url("redis")
    else:
        cache_conf, store_conf = locmem(uuid.uuid4().hex), "memory://"
    with override_settings(CACHES={"default": cache_conf}, FRESHCACHE={"STORE": store_conf}):
        store().clear()
        yield request.param
        caches["default"].clear()
        store().clear()


def fresh_name() -> str:
    return f"f{uuid.uuid4().hex}"


# -- the matrix: (sync read, async read) x (sync write, async write) ------------------------

ReadFn = tuple[Callable[[Any], Any], Callable[[Any], Any]]

READS: dict[str, ReadFn] = {
    "get": (lambda c: c.get("k"), lambda c: c.aget("k")),
    "get_many": (
        lambda c: sorted(c.get_many(["k", "z"]).items()),
        lambda c: _sorted_items(c.aget_many(["k", "z"])),
    ),
    # A one-shot iterable of keys: the backend consumes it (break-it review, issue 9).
    "get_many(generator)": (
        lambda c: sorted(c.get_many(k for k in ["k", "z"]).items()),
        lambda c: _sorted_items(c.aget_many(k for k in ["k", "z"])),
    ),
    "has_key": (lambda c: c.has_key("k"), lambda c: c.ahas_key("k")),
    "contains": (lambda c: "k" in c, None),  # type: ignore[dict-item]
}


async def _sorted_items(awaitable: Any) -> Any:
    return sorted((await awaitable).items())


# name -> (initial value of "k", sync write, async write)
WRITES: dict[str, tuple[Any, Callable[[Any], Any], Callable[[Any], Any]]] = {
    "set": (1, lambda c: c.set("k", 2), lambda c: c.aset("k", 2)),
    "add": (MISSING, lambda c: c.add("k", 2), lambda c: c.aadd("k", 2)),
    "get_or_set": (MISSING, lambda c: c.get_or_set("k", 2), lambda c: c.aget_or_set("k", 2)),
    "get_or_set(callable)": (
        MISSING,
        lambda c: c.get_or_set("k", lambda: 2),
        lambda c: c.aget_or_set("k", lambda: 2),
    ),
    "set_many": (1, lambda c: c.set_many({"k": 2, "y": 3}), lambda c: c.aset_many({"k": 2})),
    "delete": (1, lambda c: c.delete("k"), lambda c: c.adelete("k")),
    "delete_many": (1, lambda c: c.delete_many(["k", "y"]), lambda c: c.adelete_many(["k"])),
    "delete_many(generator)": (
        1,
        lambda c: c.delete_many(k for k in ["k", "y"]),
        lambda c: c.adelete_many(k for k in ["k"]),
    ),
    "touch(0)": (1, lambda c: c.touch("k", 0), lambda c: c.atouch("k", 0)),
    "incr": (1, lambda c: c.incr("k"), lambda c: c.aincr("k")),
    "decr": (1, lambda c: c.decr("k", 5), lambda c: c.adecr("k")),
    "incr_version": (1, lambda c: c.incr_version("k"), lambda c: c.aincr_version("k")),
    "clear": (1, lambda c: c.clear(), lambda c: c.aclear()),
    "set of another key": (1, lambda c: c.set("other", 9), lambda c: c.aset("other", 9)),
}


def _run(fn: Callable[[Any], Any], cache: Any, is_async: bool) -> Any:
    if not is_async:
        return fn(cache)

    async def go() -> Any:
        return await fn(cache)

    return async_to_sync(go)()


@pytest.mark.parametrize(
    ("read", "write", "is_async"),
    [
        pytest.param(read, write, is_async, id=f"{read}-{write}-{'async' if is_async else 'sync'}")
        for read, forms in READS.items()
        for write in WRITES
        for is_async in (False, True)
        if forms[int(is_async)] is not None
    ],
)
def test_a_cache_write_invalidates_a_cached_read(
    setup: str, read: str, write: str, is_async: bool
) -> None:
    read_fn = READS[read][int(is_async)]
    initial, *write_fns = WRITES[write]
    cache = caches["default"]
    if initial is not MISSING:
        cache.set("k", initial)

    if is_async:

        async def compute() -> Any:
            return await read_fn(caches["default"])

    else:

        def compute() -> Any:
            return read_fn(caches["default"])

    compute.__name__ = compute.__qualname__ = fresh_name()
    f = cached(compute)

    def call() -> Any:
        if is_async:
            return async_to_sync(f.outcome)()
        return f.outcome()

    first = call()
    assert first.stored, first.reason
    assert call().hit
    _run(write_fns[int(is_async)], cache, is_async)
    after = call()
    assert after.value == _run(read_fn, cache, is_async)  # the uncached read
    if write == "set of another key":
        assert after.hit, "a write of another key invalidated this read"
    else:
        assert not after.hit, f"{write} did not invalidate {read}"
        assert after.stored, after.reason
        assert call().hit


# -- the freshness protocol --------------------------------------------------------------


def test_a_write_during_the_computation_is_not_stored(setup: str) -> None:
    cache = caches["default"]
    cache.set("k", "old")

    @cached
    def read_k() -> Any:
        return caches["default"].get("k")

    with hook("after_compute", lambda **_: caches["default"].set("k", "new")):
        raced = read_k.outcome()
    assert raced.value == "old"
    assert not raced.stored
    assert raced.reason == "a dependency changed while computing"
    after = read_k.outcome()
    assert (after.value, after.hit) == ("new", False)


def test_a_write_inside_the_computation_makes_it_uncacheable(setup: str) -> None:
    @cached
    def memoize() -> Any:
        value = caches["default"].get("m")
        if value is None:
            value = "computed"
            caches["default"].set("m", value)
        return value

    first = memoize.outcome()
    assert (first.value, first.stored) == ("computed", False)
    assert first.reason == "wrote to Django's cache ('default')"
    second = memoize.outcome()
    assert second.stored, second.reason
    assert memoize.outcome().hit


def test_results_and_errors_of_cache_calls_are_unchanged(setup: str) -> None:
    cache = caches["default"]
    assert cache.add("n", 1) is True
    assert cache.add("n", 2) is False
    assert cache.incr("n", 4) == 5
    with pytest.raises(ValueError):
        cache.incr("absent")
    assert cache.get_or_set("n", 0) == 5
    assert cache.get("absent", "dflt") == "dflt"
    assert cache.delete("n") is True
    assert cache.delete("n") is False


def test_outside_a_scope_reads_record_nothing(setup: str) -> None:
    cache = caches["default"]
    cache.set("k", 1)
    assert cache.get("k") == 1  # no scope: nothing to assert but that it works


def test_aliases_on_one_location_share_tags() -> None:
    name = uuid.uuid4().hex
    with override_settings(
        CACHES={"default": locmem(name), "other": locmem(name)}, FRESHCACHE={"STORE": "memory://"}
    ):

        @cached
        def via_default() -> Any:
            return caches["default"].get("k")

        assert via_default.outcome().stored
        caches["other"].set("k", 5)
        assert via_default.outcome().value == 5


# -- process-local caches with a shared store --------------------------------------------


@pytest.fixture
def shared_store_locmem() -> Iterator[None]:
    pytest_runtest_setup_redis()
    with override_settings(
        CACHES={"default": locmem(uuid.uuid4().hex)}, FRESHCACHE={"STORE": store_url("redis")}
    ):
        store().clear()
        django_cache._warned.clear()
        yield
        store().clear()


def pytest_runtest_setup_redis() -> None:
    from tests.conftest import redis_available

    if not redis_available():
        if os.environ.get("CI") == "true":
            pytest.fail("redis is not reachable, and CI never skips service tests")
        pytest.skip("needs Redis")


def test_a_local_cache_read_is_not_stored_in_a_shared_store(
    shared_store_locmem: None, caplog: pytest.LogCaptureFixture
) -> None:
    caches["default"].set("root", "/home/")

    @cached
    def links() -> Any:
        return caches["default"].get("root")

    with caplog.at_level(logging.WARNING, logger="freshcache"):
        outcomes = [links.outcome() for _ in range(3)]
    for outcome in outcomes:
        assert (outcome.value, outcome.hit, outcome.stored) == ("/home/", False, False)
        assert outcome.reason == "read a process-local cache (locmem 'default')"
    lines = [r.getMessage() for r in caplog.records if "process-local" in r.getMessage() or
             "keeps for itself" in r.getMessage()]  # fmt: skip
    assert lines == [
        "freshcache: a cached computation read CACHES['default'] (locmem), which each process "
        "keeps for itself, while the freshcache store is shared: a write in another process "
        "would not reach this copy, so such results are served but not stored. Use a shared "
        "CACHES backend (Redis, Memcached, database); see freshcache.W005."
    ]


def test_a_local_cache_declared_shared_is_a_dependency(shared_store_locmem: None) -> None:
    with override_settings(
        FRESHCACHE={"STORE": store_url("redis"), "DJANGO_CACHES": {"default": "shared"}}
    ):

        @cached
        def links() -> Any:
            return caches["default"].get("root")

        assert links.outcome().stored
        caches["default"].set("root", "/new/")
        assert links.outcome().value == "/new/"


class TeamCache(LocMemCache):
    """A project's own subclass of a local backend: still local."""


class SharedLooking(LocMemCache):
    pass


def test_a_subclass_of_a_local_backend_is_local(shared_store_locmem: None) -> None:
    name = f"{__name__}.TeamCache"
    with override_settings(CACHES={"default": {"BACKEND": name, "LOCATION": uuid.uuid4().hex}}):

        @cached
        def links() -> Any:
            return caches["default"].get("root")

        assert links.outcome().reason == "read a process-local cache (locmem 'default')"


def test_a_custom_backend_declared_local_is_refused() -> None:
    pytest_runtest_setup_redis()
    with override_settings(
        CACHES={"default": redis_cache()},
        FRESHCACHE={"STORE": store_url("redis"), "DJANGO_CACHES": {"default": "local"}},
    ):

        @cached
        def links() -> Any:
            return caches["default"].get("root")

        assert links.outcome().reason == "read a process-local cache (custom 'default')"


def test_a_nested_memory_store_computation_inherits_the_shared_verdict(
    shared_store_locmem: None,
) -> None:
    @cached(store="default")
    def outer() -> Any:
        return caches["default"].get("root")

    assert not outer.outcome().stored


# -- a bump that fails is logged, even when the caller's transaction rolls back ------------


@pytest.mark.postgres
def test_a_failed_bump_is_logged_outside_the_callers_transaction() -> None:
    with override_settings(
        CACHES={"default": locmem(uuid.uuid4().hex)},
        FRESHCACHE={"STORE": "redis://127.0.0.1:1/0?connect_timeout=0.05&socket_timeout=0.05"},
    ):
        LogEntry.objects.all().delete()
        with pytest.raises(RuntimeError), transaction.atomic():
            caches["default"].set("k", 1)
            raise RuntimeError("the view failed after writing the cache")
        assert caches["default"].get("k") == 1  # the cache write was not rolled back
        rows = list(LogEntry.objects.values_list("tags", flat=True))
        tag = django_cache.key_tag("default", caches["default"].make_key("k"))
        assert rows == [tag]
        LogEntry.objects.all().delete()


@cached
def reads_k() -> Any:
    return caches["default"].get("k")


@pytest.mark.postgres
def test_a_cache_write_inside_atomic_is_bumped_at_once_on_the_database_store() -> None:
    """The database store bumps inside an open transaction of its database: a Django cache
    write must not join it (invisible to others until COMMIT, undone by a rollback while the
    cache keeps the new value). Review finding, issue 9."""
    import threading

    from django.db import connection

    with override_settings(
        CACHES={"default": locmem(uuid.uuid4().hex)},
        FRESHCACHE={"STORE": "database://", "DJANGO_CACHES": {"default": "shared"}},
    ):
        store().clear()
        caches["default"].set("k", 1)
        reads_k()
        assert reads_k.outcome().hit
        seen: list[Any] = []

        def other_process() -> None:  # another connection, as another worker would be
            try:
                seen.append(reads_k.outcome())
            finally:
                connection.close()

        with pytest.raises(RuntimeError), transaction.atomic():
            caches["default"].set("k", 2)
            reader = threading.Thread(target=other_process)
            reader.start()
            reader.join(10)
            raise RuntimeError("the view failed after writing the cache")
        assert (seen[0].hit, seen[0].value) == (False, 2), seen
        assert reads_k.outcome().value == 2  # after the rollback too
        assert caches["default"].get("k") == 2
        store().clear()


class TieredCache(LocMemCache):
    """A backend whose ``set`` also writes another followed cache (a two-level cache)."""

    def set(self, key: Any, value: Any, timeout: Any = 300, version: Any = None) -> None:
        super().set(key, value, timeout, version)
        caches["l2"].set(key, value, timeout, version)


@cached
def reads_l2() -> Any:
    return caches["l2"].get("k")


def test_a_write_one_backend_makes_through_another_is_bumped() -> None:
    """Review finding: a followed write inside another followed write was never bumped, even
    when it went to a different backend (whose keys the outer bump does not name)."""
    tiered = {"BACKEND": f"{__name__}.TieredCache", "LOCATION": uuid.uuid4().hex}
    with override_settings(
        CACHES={"default": tiered, "l2": locmem(uuid.uuid4().hex)},
        FRESHCACHE={"STORE": "memory://"},
    ):
        store().clear()
        caches["default"].set("k", 1)
        assert reads_l2() == 1 and reads_l2.outcome().hit
        caches["default"].set("k", 2)
        assert caches["l2"].get("k") == 2
        assert reads_l2.outcome().value == 2


def test_invalidating_the_whole_cache_tag_reaches_every_read(setup: str) -> None:
    """What limits.md tells users of a backend's own methods (``delete_pattern``) to do."""
    from freshcache import invalidate

    caches["default"].set("k", 1)
    assert reads_k() == 1 and reads_k.outcome().hit
    invalidate("django.cache:default")
    assert not reads_k.outcome().hit
