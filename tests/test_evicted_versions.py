"""A tag bumped and then its version lost while a computation runs: the result is not stored.

Issue 9, item 9 (last scenario), on every store. The bump lands between the computation's
snapshot and its store, and then the tag's version disappears (Redis eviction, a deleted row, the
memory store's LRU): at store time the tag looks never seen. Its first-sighting version must not
let the entry in, because the missing version may be exactly that bump: the store accepts a
first sighting only if nothing at all was bumped since the snapshot (``stores/base.py``, point 3).

Each case also checks what a user sees next: the following read misses and returns the data as
it is now. The neighbours: the bump and the loss in the other order, only one of two tags lost,
every tag version lost, and the loss alone (nothing bumped: storing is then right, and must
still happen, or the rule would refuse far more than it needs to).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection

import freshcache
from freshcache import depends_on, invalidate
from freshcache.core import fetch
from freshcache.stores import Store
from freshcache.testing import hook
from tests.conftest import REDIS_TEST_PREFIX
from tests.test_store_contract import forget_tag_versions

data: dict[str, int] = {}


@pytest.fixture(autouse=True)
def _data() -> None:
    data.clear()
    data.update(a=1, b=1)


def lose_version(kind: str, store: Store, tag: str) -> None:
    """Delete one tag's version the way eviction would."""
    if kind == "memory":
        store._tags.pop(tag, None)  # type: ignore[attr-defined]
    elif kind == "database":
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM freshcache_tag WHERE tag = %s", [tag])
    else:
        store._client.delete("{" + REDIS_TEST_PREFIX + "}:t:" + tag)  # type: ignore[attr-defined]


def write(name: str) -> None:
    data[name] += 1
    invalidate(f"ev:{name}")


def read(*names: str) -> Callable[[], tuple[int, ...]]:
    def compute() -> tuple[int, ...]:
        depends_on(*(f"ev:{n}" for n in names))
        return tuple(data[n] for n in names)

    return compute


def once(fn: Callable[[], None]) -> Callable[..., None]:
    """A hook that runs ``fn`` at its first call only (nested computations call it again)."""
    done: list[bool] = []

    def run(**_: object) -> None:
        if not done:
            done.append(True)
            fn()

    return run


@pytest.mark.parametrize("point", ["after_snapshot", "after_compute"])
def test_bumped_then_evicted_during_a_computation_is_not_stored(
    fresh_store: Store, store_kind: str, point: str
) -> None:
    """``after_snapshot``: the scenario as the issue states it (the computation then reads the
    new value, but the store cannot know that). ``after_compute``: the same once the computation
    has read the old value, where storing it would serve a stale value until the next bump."""
    assert fetch("ev:a", read("a")).stored is True  # the tag has a version
    write("a")  # the entry is out of date: the next read computes

    def bump_and_lose() -> None:
        write("a")
        lose_version(store_kind, fresh_store, "ev:a")

    with hook(point, once(bump_and_lose)):
        out = fetch("ev:a", read("a"))
    assert out.value == ((3,) if point == "after_snapshot" else (2,))
    assert (out.hit, out.stored, out.reason) == (
        False,
        False,
        "a dependency changed while computing",
    )
    after = fetch("ev:a", read("a"))
    assert (after.hit, after.value) == (False, (3,))
    assert fetch("ev:a", read("a")).hit is True


def test_evicted_then_bumped_during_a_computation_is_not_stored(
    fresh_store: Store, store_kind: str
) -> None:
    assert fetch("ev:a", read("a")).stored is True

    def lose_and_bump() -> None:
        lose_version(store_kind, fresh_store, "ev:a")
        write("a")

    with hook("after_compute", once(lose_and_bump)):
        out = fetch("ev:b+a", read("b", "a"))
    assert (out.value, out.stored) == ((1, 1), False)
    assert fetch("ev:b+a", read("b", "a")).value == (1, 2)


def test_one_of_two_tags_bumped_and_evicted_is_not_stored(
    fresh_store: Store, store_kind: str
) -> None:
    """The lost tag is not the one the entry's other tag versions could reveal as bumped."""
    assert fetch("ev:a+b", read("a", "b")).stored is True
    write("a")

    def bump_and_lose() -> None:
        write("b")
        lose_version(store_kind, fresh_store, "ev:b")

    with hook("after_compute", once(bump_and_lose)):
        out = fetch("ev:a+b", read("a", "b"))
    assert (out.value, out.stored) == ((2, 1), False)
    after = fetch("ev:a+b", read("a", "b"))
    assert (after.hit, after.value) == (False, (2, 2))
    assert fetch("ev:a+b", read("a", "b")).hit is True


def test_bumped_then_every_version_lost_is_not_stored(fresh_store: Store, store_kind: str) -> None:
    assert fetch("ev:a", read("a")).stored is True
    write("a")

    def bump_and_flush() -> None:
        write("a")
        forget_tag_versions(store_kind)

    with hook("after_compute", once(bump_and_flush)):
        out = fetch("ev:a", read("a"))
    assert (out.value, out.stored) == ((2,), False)
    assert fetch("ev:a", read("a")).value == (3,)


def test_a_never_seen_tag_bumped_then_evicted_is_not_stored(
    fresh_store: Store, store_kind: str
) -> None:
    """The tag had no version when the computation began: the bump creates it, eviction loses
    it, and the store sees a tag that looks as new as it did at the snapshot."""

    def bump_and_lose() -> None:
        write("a")
        lose_version(store_kind, fresh_store, "ev:a")

    with hook("after_compute", once(bump_and_lose)):
        out = fetch("ev:a", read("a"))
    assert (out.value, out.stored) == ((1,), False)
    assert fetch("ev:a", read("a")).value == (2,)


def test_evicted_without_a_bump_is_still_stored(fresh_store: Store, store_kind: str) -> None:
    """Nothing was bumped since the snapshot: the lost version cannot have been a bump made
    meanwhile, so the entry is stored at once (a first sighting), and then served."""
    assert fetch("ev:a", read("a")).stored is True
    write("a")
    with hook("after_compute", once(lambda: lose_version(store_kind, fresh_store, "ev:a"))):
        out = fetch("ev:a", read("a"))
    assert (out.value, out.stored) == ((2,), True)
    hit = fetch("ev:a", read("a"))
    assert (hit.hit, hit.value) == (True, (2,))
    assert freshcache.stats()["stores_skipped_race"] == 0
