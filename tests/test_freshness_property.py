"""Property-based proof of the core protocol: a cached read always equals the uncached truth.

A Hypothesis state machine runs random programs against each store: cached reads of random sets
of rows, writes that commit or roll back, writes that land in the middle of a computation
(between its snapshot and its data read, or between its read and its store), lost tag versions,
cleared stores. After every step, every cached read must return what the database holds.
"""

from __future__ import annotations

import os

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import freshcache
from freshcache import cached, depends_on, invalidate
from freshcache.testing import hook
from tests.conftest import mark_store_kind
from tests.testapp.models import Item


@pytest.fixture(params=["memory", "database", "redis", "redis-cluster", "redis-cluster-near"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """The stores, and Redis Cluster (snapshots there are vectors of shard positions), also
    with a near cache in front."""
    return mark_store_kind(request)

KEYS = ("a", "b", "c", "d")
READS = (("a",), ("b",), ("a", "b"), ("b", "c", "d"), KEYS)

PROFILE = os.environ.get("FRESHCACHE_HYPOTHESIS_PROFILE", "ci")
EXAMPLES = {"ci": 12, "long": 300}[PROFILE]
STEPS = {"ci": 25, "long": 60}[PROFILE]


def truth(keys: tuple[str, ...]) -> dict[str, int]:
    return dict(Item.objects.filter(name__in=keys).values_list("name", "value"))


@cached
def cached_read(keys: tuple[str, ...]) -> dict[str, int]:
    depends_on(*(f"item:{k}" for k in keys))
    return truth(keys)


@cached
def cached_page(keys: tuple[str, ...]) -> dict[str, int]:
    # Nesting: the outer value depends on whatever the inner reads depend on.
    out: dict[str, int] = {}
    for k in keys:
        out.update(cached_read((k,)))
    return out


def write(key: str, *, commit: bool = True) -> None:
    class Rollback(Exception):
        pass

    try:
        with transaction.atomic():
            Item.objects.filter(name=key).update(value=Item.objects.get(name=key).value + 1)
            invalidate(f"item:{key}")
            if not commit:
                raise Rollback
    except Rollback:
        pass


class Freshness(RuleBasedStateMachine):
    store_kind = "memory"

    @initialize()
    def start(self) -> None:
        freshcache.store().clear()
        Item.objects.all().delete()
        Item.objects.bulk_create([Item(name=k, value=0) for k in KEYS])

    @rule(keys=st.sampled_from(READS), nested=st.booleans())
    def read(self, keys: tuple[str, ...], nested: bool) -> None:
        fn = cached_page if nested else cached_read
        assert fn(keys) == truth(keys)

    @rule(key=st.sampled_from(KEYS), commit=st.booleans())
    def write(self, key: str, commit: bool) -> None:
        write(key, commit=commit)

    @rule(
        keys=st.sampled_from(READS),
        key=st.sampled_from(KEYS),
        point=st.sampled_from(["after_snapshot", "after_compute"]),
        nested=st.booleans(),
    )
    def write_during_read(self, keys: tuple[str, ...], key: str, point: str, nested: bool) -> None:
        """A write lands in the middle of a computation: after its snapshot and before it reads
        the rows, or after it read old rows and before it stores."""
        write(keys[0])  # make sure the read below is a miss, so the computation runs
        done: list[bool] = []

        def writer(**_: object) -> None:
            if not done:
                done.append(True)
                write(key)

        fn = cached_page if nested else cached_read
        with hook(point, writer):
            fn(keys)
        assert done, "the computation did not run"

    @rule()
    def lose_tag_versions(self) -> None:
        from tests.test_store_contract import forget_tag_versions

        forget_tag_versions(self.store_kind)

    @rule()
    def clear(self) -> None:
        freshcache.store().clear()

    @invariant()
    def every_cached_read_is_fresh(self) -> None:
        for keys in READS:
            assert cached_read(keys) == truth(keys), keys
            assert cached_page(keys) == truth(keys), keys


SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    derandomize=PROFILE == "ci",
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.slow
def test_cached_reads_always_equal_the_truth(fresh_store: object, store_kind: str) -> None:
    machine = type(f"Freshness_{store_kind}", (Freshness,), {"store_kind": store_kind})
    machine.TestCase.settings = SETTINGS
    try:
        machine.TestCase().runTest()
    finally:
        connection.close()
