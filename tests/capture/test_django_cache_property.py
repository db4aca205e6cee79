"""Generated sequences of Django cache operations against cached reads of that cache.

After every operation, each cached read (``get``, ``get_many``, ``in``) must equal the same read
run uncached: whatever the order of writes (``set``, ``add``, ``delete``, ``incr``,
``set_many``, ``delete_many``, ``get_or_set``, ``incr_version``, ``clear``), a write through the
cache API reaches every entry that read what it changed.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.core.cache import caches
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from freshcache import cached, store

pytestmark = pytest.mark.django_db(transaction=True)

KEYS = st.sampled_from(["a", "b", "c"])
VALUES = st.integers(min_value=0, max_value=5)

OPS = st.one_of(
    st.tuples(st.just("set"), KEYS, VALUES),
    st.tuples(st.just("add"), KEYS, VALUES),
    st.tuples(st.just("delete"), KEYS),
    st.tuples(st.just("incr"), KEYS),
    st.tuples(st.just("set_many"), st.dictionaries(KEYS, VALUES, max_size=2)),
    st.tuples(st.just("delete_many"), st.lists(KEYS, max_size=2)),
    st.tuples(st.just("get_or_set"), KEYS, VALUES),
    st.tuples(st.just("incr_version"), KEYS),
    st.tuples(st.just("clear")),
)


def apply(cache: Any, op: tuple[Any, ...]) -> None:
    name, *args = op
    if name == "incr":
        if cache.get(args[0]) is not None:
            cache.incr(args[0])
    elif name == "incr_version":
        if args[0] in cache:
            cache.incr_version(args[0])
    else:
        getattr(cache, name)(*args)


def read_get(key: str) -> Any:
    return caches["default"].get(key)


def read_many() -> Any:
    return sorted(caches["default"].get_many(["a", "b", "c"]).items())


def read_in(key: str) -> bool:
    return key in caches["default"]


cached_get = cached(read_get)
cached_many = cached(read_many)
cached_in = cached(read_in)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(OPS, max_size=12))
def test_cached_reads_equal_uncached_reads(transactional_db: None, ops: list[Any]) -> None:
    with override_settings(
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                            "LOCATION": uuid.uuid4().hex}},
        FRESHCACHE={"STORE": "memory://"},
    ):  # fmt: skip
        store().clear()
        cache = caches["default"]
        for op in [None, *ops]:
            if op is not None:
                apply(cache, op)
            for _ in range(2):  # the second round is served from the store
                assert cached_many() == read_many(), op
                for key in "abc":
                    assert cached_get(key) == read_get(key), (op, key)
                    assert cached_in(key) == read_in(key), (op, key)
