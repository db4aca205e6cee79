"""Fixtures for the capture tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import override_settings

import freshcache
from freshcache import cached, counters
from freshcache.stores import Store


@pytest.fixture
def memory_store(transactional_db: None) -> Iterator[Store]:
    """The in-process store, empty. ``transactional_db``: bumps happen on real commits.

    No relay: these tests pin the tags the ORM capture bumps itself. A relay applying the
    triggers' rows first (its tags are exact, so the writer's wider bump is then skipped) would
    make them depend on a race; tests/log/ covers the triggers and the relay.
    """
    with override_settings(FRESHCACHE={"STORE": "memory://", "RELAY": False}):
        store = freshcache.store()
        store.clear()
        counters.reset()
        yield store
        store.clear()


class Watch:
    """Named ``@cached`` computations, to observe which ones a write invalidates.

    ``watch.warm()`` computes and stores each; ``watch.invalidated()`` returns the names that
    are no longer served from the cache, after checking that every value served equals the same
    computation run uncached (and stores them again).
    """

    _serial = 0

    def __init__(self, **computations: Callable[[], Any]) -> None:
        Watch._serial += 1
        self.plain = computations
        self.cached = {
            name: cached(name=f"watch{Watch._serial}:{name}")(fn)
            for name, fn in computations.items()
        }

    def warm(self) -> None:
        for name, fn in self.cached.items():
            outcome = fn.outcome()  # type: ignore[attr-defined]
            if not outcome.hit and not outcome.stored:
                outcome = fn.outcome()  # type: ignore[attr-defined]
            assert outcome.hit or outcome.stored, (name, outcome.reason)

    def invalidated(self) -> set[str]:
        missed = set()
        for name, fn in self.cached.items():
            outcome = fn.outcome()  # type: ignore[attr-defined]
            assert outcome.value == self.plain[name](), f"{name} served a stale value"
            if not outcome.hit:
                missed.add(name)
        self.warm()
        return missed


@pytest.fixture
def watch(memory_store: Store) -> type[Watch]:
    return Watch
