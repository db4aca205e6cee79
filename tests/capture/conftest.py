"""Fixtures for the capture tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.test import override_settings

import freshcache
from freshcache import counters
from freshcache.stores import Store


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    # Several developers' runs can share one PostgreSQL server: FRESHCACHE_TEST_DB_SUFFIX gives
    # this run its own test database.
    suffix = os.environ.get("FRESHCACHE_TEST_DB_SUFFIX")
    if suffix:
        test = settings.DATABASES["default"].setdefault("TEST", {})
        test["NAME"] = f"{test.get('NAME') or 'test_freshcache'}_{suffix}"


@pytest.fixture
def memory_store(transactional_db: None) -> Iterator[Store]:
    """The in-process store, empty. ``transactional_db``: bumps happen on real commits."""
    with override_settings(FRESHCACHE={"STORE": "memory://"}):
        store = freshcache.store()
        store.clear()
        counters.reset()
        yield store
        store.clear()
