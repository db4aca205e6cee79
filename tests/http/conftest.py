"""Fixtures for the page-cache tests: an empty memory store, counters reset, the header on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client, override_settings

import freshcache
from tests.http_app.views import RENDERS


@pytest.fixture
def page_store(transactional_db: None) -> Iterator[None]:
    """The memory store, emptied, with ``X-Freshcache`` on.

    ``transactional_db``: inside a test-wide transaction every write would leave it dirty, and
    freshcache (rightly) neither serves nor stores anything in a dirty transaction.
    """
    with override_settings(FRESHCACHE={"STORE": "memory://", "HEADER": True}):
        freshcache.store().clear()
        RENDERS.clear()
        yield
        freshcache.store().clear()


@pytest.fixture
def client(page_store: None) -> Client:
    return Client()


def state(response) -> str:  # type: ignore[no-untyped-def]
    """The first word of ``X-Freshcache``: hit, miss or bypass."""
    return response["X-Freshcache"].split(";")[0]


def count_calls(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[Any]:
    """Replace ``owner.name`` (for the test) with a wrapper recording each call's arguments."""
    calls: list[Any] = []
    real = getattr(owner, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls
