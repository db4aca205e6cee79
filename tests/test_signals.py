"""``freshcache.signals``: what a receiver is sent for real hits, misses, stores and writes.

Each test connects receivers the way a user would and observes what they were sent after real
requests (Django's test client) and real writes on the real stores.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client, override_settings

import freshcache
from freshcache import cached, events, invalidate, signals
from freshcache.stores import Store
from tests.http_app.views import RENDERS
from tests.testapp.models import Item

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = f"{socket.gethostname()}:{os.getpid()}"


class Received:
    """A receiver that records every signal it gets, as ``(signal name, kwargs)``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, signal: Any, sender: Any, **kwargs: Any) -> None:
        name = next(n for n in ("hit", "miss", "stored", "invalidated")
                    if getattr(signals, n) is signal)  # fmt: skip
        self.calls.append((name, {"sender": sender, **kwargs}))

    def of(self, signal: str, /, **match: Any) -> list[dict[str, Any]]:
        return [
            kw
            for n, kw in self.calls
            if n == signal and all(kw.get(k) == v for k, v in match.items())
        ]


@pytest.fixture
def received() -> Iterator[Received]:
    receiver = Received()
    for signal in (signals.hit, signals.miss, signals.stored, signals.invalidated):
        signal.connect(receiver)
    yield receiver
    for signal in (signals.hit, signals.miss, signals.stored, signals.invalidated):
        signal.disconnect(receiver)
    assert signals._dispatch not in events._listeners  # the journal may still listen


@pytest.fixture
def page_client(transactional_db: None) -> Iterator[Client]:
    with override_settings(FRESHCACHE={"STORE": "memory://", "HEADER": True}):
        freshcache.store().clear()
        RENDERS.clear()
        yield Client()
        freshcache.store().clear()


@cached
def count_items(kind: str) -> int:
    return Item.objects.filter(name=kind).count()


COUNT_ITEMS = "tests.test_signals.count_items"


def test_a_function_miss_store_hit_and_write(fresh_store: Store, received: Received) -> None:
    assert count_items("a") == 0
    (miss,) = received.of("miss")
    assert miss["sender"] == "function"
    assert miss["kind"] == "function"
    assert miss["name"] == COUNT_ITEMS
    assert miss["stored"] is True
    assert miss["bypass"] is False
    assert miss["reason"] is None
    assert isinstance(miss["seconds"], float) and 0 <= miss["seconds"] < 5
    assert any(tag.startswith("testapp.item") for tag in miss["tags"])
    (stored,) = received.of("stored")
    assert stored["name"] == COUNT_ITEMS
    assert stored["tags"] == miss["tags"]

    assert count_items("a") == 0
    (hit,) = received.of("hit")
    assert hit == {"sender": "function", "kind": "function", "name": COUNT_ITEMS,
                   "tags": miss["tags"]}  # fmt: skip

    Item.objects.create(name="a")
    (bump,) = received.of("invalidated")
    assert bump["sender"] == "invalidation"
    assert bump["origin"] == ORIGIN
    assert bump["source"] == "write"
    assert bump["failed"] is False
    assert bump["tags"] & miss["tags"]  # the write reached what the function read

    assert count_items("a") == 1
    assert len(received.of("miss", name=COUNT_ITEMS, stored=True)) == 2


def test_invalidate_reports_its_source(fresh_store: Store, received: Received) -> None:
    invalidate("weather:london")
    (bump,) = received.of("invalidated")
    assert bump["tags"] == frozenset({"weather:london"})
    assert bump["source"] == "invalidate"


def test_a_bypass_is_a_miss_with_its_reason(fresh_store: Store, received: Received) -> None:
    from django.db import transaction

    with transaction.atomic():
        Item.objects.create(name="b")
        count_items("b")
    (miss,) = received.of("miss", name=COUNT_ITEMS)
    assert miss["bypass"] is True
    assert miss["stored"] is False
    assert miss["reason"] == "transaction has written"
    assert not received.of("stored")


def test_a_direct_fetch_is_named_by_its_key_prefix(fresh_store: Store, received: Received) -> None:
    from freshcache.core import fetch

    fetch("greeting:en", lambda: "hello")
    fetch("greeting:en", lambda: "hello")
    assert [kw["name"] for kw in received.of("miss", kind="value")] == ["greeting"]
    assert [kw["name"] for kw in received.of("hit", kind="value")] == ["greeting"]


def test_page_signals_name_the_view(page_client: Client, received: Received) -> None:
    page_client.get("/t/plain/")
    page_client.get("/t/plain/")
    (miss,) = received.of("miss", kind="page")
    assert miss["name"] == "tests.http_app.views.plain"
    assert miss["stored"] is True
    assert "http:plain" in miss["tags"]
    (hit,) = received.of("hit", kind="page")
    assert hit["name"] == "tests.http_app.views.plain"
    assert "http:plain" in hit["tags"]

    page_client.post("/t/plain/")
    (bypass,) = received.of("miss", kind="page", bypass=True)
    assert bypass["reason"] == "method POST"
    assert bypass["seconds"] is None  # rendered outside the cache


def test_fragment_signals(page_client: Client, received: Received) -> None:
    page_client.get("/t/fragments-uncached/")
    page_client.get("/t/fragments-uncached/")
    assert [kw["name"] for kw in received.of("miss", kind="fragment")] == ["inner", "outer"]
    assert [kw["name"] for kw in received.of("hit", kind="fragment")] == ["outer"]


def test_a_receiver_may_listen_to_one_kind(page_client: Client) -> None:
    seen: list[str] = []

    def on_page_hit(sender: str, name: str, **kwargs: Any) -> None:
        seen.append(name)

    signals.hit.connect(on_page_hit, sender="page")
    try:
        page_client.get("/t/plain/")
        page_client.get("/t/plain/")
        page_client.get("/t/fragments-uncached/")
        page_client.get("/t/fragments-uncached/")  # fragment hits: not sent to this receiver
    finally:
        signals.hit.disconnect(on_page_hit, sender="page")
    assert seen == ["tests.http_app.views.plain"]


def test_a_raising_receiver_never_breaks_a_page(
    page_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    later = Received()
    signals.miss.connect(broken)
    signals.hit.connect(broken)
    signals.hit.connect(later)
    try:
        with caplog.at_level(logging.WARNING, logger="freshcache"):
            first = page_client.get("/t/plain/")
            second = page_client.get("/t/plain/")
    finally:
        signals.miss.disconnect(broken)
        signals.hit.disconnect(broken)
        signals.hit.disconnect(later)
    assert first.status_code == second.status_code == 200
    assert first["X-Freshcache"] == "miss"
    assert second["X-Freshcache"] == "hit"
    assert second.content == b"plain render 1"
    warnings = [r for r in caplog.records if "broken" in r.getMessage()]
    assert len(warnings) == 1  # once, though it raised twice
    assert warnings[0].levelno == logging.WARNING
    assert "raised; ignored" in warnings[0].getMessage()
    assert len(later.of("hit")) == 1  # the receivers after it still ran


@override_settings(FRESHCACHE={"STORE": "memory://", "HEADER": True, "JOURNAL": False})
def test_no_receiver_costs_nothing(
    page_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no receiver (metrics and the journal off), no event is built, timed or sent:
    counted."""
    calls: list[str] = []
    for name in ("observe", "aobserve", "settle", "emit", "invalidated", "forget"):
        original = getattr(events, name)

        def counting(*args: Any, _name: str = name, _fn: Any = original, **kw: Any) -> Any:
            calls.append(_name)
            return _fn(*args, **kw)

        monkeypatch.setattr(events, name, counting)

    assert not events.listening
    page_client.get("/t/plain/")
    page_client.get("/t/plain/")
    page_client.get("/t/fragments-uncached/")
    page_client.get("/t/fragments-uncached/")
    count_items("c")
    count_items("c")
    Item.objects.create(name="c")
    invalidate("x")
    assert calls == []

    receiver = Received()
    signals.hit.connect(receiver)
    try:
        assert events.listening
        page_client.get("/t/plain/")
    finally:
        signals.hit.disconnect(receiver)
    assert "observe" in calls and "settle" in calls
    assert not events.listening


async def test_async_pages_and_functions(page_client: Client, received: Received) -> None:
    from django.test import AsyncClient

    from freshcache import depends_on

    @cached(name="forecast")
    async def forecast(city: str) -> str:
        depends_on(f"weather:{city}")
        return city.upper()

    client = AsyncClient()
    await client.get("/t/async/")
    await client.get("/t/async/")
    assert await forecast("paris") == await forecast("paris") == "PARIS"
    (page_miss,) = received.of("miss", kind="page")
    assert page_miss["name"] == "tests.http_app.views.async_view"
    assert page_miss["stored"] is True
    assert isinstance(page_miss["seconds"], float)
    assert [kw["name"] for kw in received.of("hit", kind="page")] == [page_miss["name"]]
    (function_miss,) = received.of("miss", kind="function")
    assert function_miss["name"] == "forecast"
    assert function_miss["tags"] == frozenset({"weather:paris"})
    assert [kw["name"] for kw in received.of("hit", kind="function")] == ["forecast"]
