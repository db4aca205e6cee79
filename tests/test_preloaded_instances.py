"""A value built from a model instance loaded before its own snapshot (found by the freshness
checker on 2026-12-01: one stale read of the database store, reproduced on every store).

A page's view loads the post; a writer updates it and returns; the page reaches
``{% cachefresh "post" post %}``, a miss whose snapshot is already after the write, computed
from the view's old instance without a query. Its tags pass the stale-set guard (no version is
newer than its snapshot), so the old title was stored as current, and a request that started
after the write returned got it. A value computed inside another cached computation is now
stored against the oldest snapshot of the computations around it (``watermark.oldest_enclosing``).
"""

from __future__ import annotations

import copy
import pickle
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connections

from freshcache import cached, watermark
from freshcache.core import fetch, store_key
from freshcache.http.fragments import fragment_key, render_fragment
from freshcache.stores import Hit, Store
from tests.conftest import mark_store_kind
from tests.http_app.models import Article


@pytest.fixture(params=["memory", "database", "redis", "redis-cluster"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """The stores, and Redis Cluster (snapshots there are vectors of shard positions)."""
    return mark_store_kind(request)


def _render(article: Article) -> str:
    return render_fragment("title", [article], "preloaded", None, lambda: article.title)


def _write_elsewhere(pk: int, title: str) -> None:
    """The writer: another thread (its own connection, no scope of ours); returns once done."""

    def run() -> None:
        try:
            Article.objects.filter(pk=pk).update(title=title)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)


def test_a_fragment_inside_a_page_is_not_stored_from_an_instance_loaded_before_a_write(
    fresh_store: Store,
) -> None:
    article = Article.objects.create(slug="p", title="old")

    def page() -> str:
        loaded = Article.objects.get(pk=article.pk)  # the view loads the post
        _write_elsewhere(article.pk, "new")  # the write commits and returns meanwhile
        return f"<title>{loaded.title}</title>" + _render(loaded)

    first = fetch("t:preloaded:page", page)
    assert first.value == "<title>old</title>old"  # started before the write returned: fine
    assert not first.stored
    # A request that starts after the write returned, whether it renders the fragment alone
    # or the page: the new title only.
    assert _render(Article.objects.get(pk=article.pk)) == "new"
    fresh = Article.objects.get(pk=article.pk)
    again = fetch("t:preloaded:page", lambda: f"<title>{fresh.title}</title>" + _render(fresh))
    assert again.value == "<title>new</title>new"


def test_nothing_changed_meanwhile_the_fragment_is_stored(fresh_store: Store) -> None:
    article = Article.objects.create(slug="q", title="same")

    def page() -> str:
        return _render(Article.objects.get(pk=article.pk))

    assert fetch("t:preloaded:quiet", page).stored
    assert isinstance(fresh_store.lookup(store_key("t:preloaded:quiet")), Hit)
    assert _render(Article.objects.get(pk=article.pk)) == "same"


# Outside any cached computation: the instance carries the read generation it was loaded at
# (watermark.py), bounded by a snapshot this process saw before; a write since refuses the store.


def _warm() -> None:
    """A miss elsewhere: the process has seen the store's sequence (as any live process has)."""
    fetch(f"t:preloaded:warm:{time.monotonic_ns()}", lambda: 1)


def test_a_fragment_alone_from_an_instance_loaded_before_a_write(fresh_store: Store) -> None:
    article = Article.objects.create(slug="a", title="old")
    _warm()
    loaded_by_a = Article.objects.get(pk=article.pk)
    _write_elsewhere(article.pk, "new")
    assert _render(loaded_by_a) == "old"
    assert _render(Article.objects.get(pk=article.pk)) == "new"


@cached
def shout(article: Article) -> str:
    return article.title.upper()


def test_a_cached_function_from_an_instance_loaded_before_a_write(fresh_store: Store) -> None:
    article = Article.objects.create(slug="b", title="old")
    _warm()
    loaded_by_a = Article.objects.get(pk=article.pk)
    _write_elsewhere(article.pk, "new")
    assert shout.outcome(loaded_by_a).reason is not None  # served, not stored
    assert shout(loaded_by_a) == "OLD"
    assert shout(Article.objects.get(pk=article.pk)) == "NEW"


def test_unchanged_since_loaded_the_fragment_and_the_function_are_stored(
    fresh_store: Store,
) -> None:
    article = Article.objects.create(slug="c", title="same")
    _warm()
    loaded = Article.objects.get(pk=article.pk)
    assert _render(loaded) == "same"
    assert shout.outcome(loaded).stored
    assert shout.outcome(Article.objects.get(pk=article.pk)).hit
    key = fragment_key("title", [loaded], "preloaded")
    assert isinstance(fresh_store.lookup(store_key(key)), Hit)


def test_loaded_before_the_process_saw_the_store_it_is_not_stored(fresh_store: Store) -> None:
    article = Article.objects.create(slug="d", title="same")
    # As a process that has not talked to the store yet (its writes take a snapshot first:
    # watermark.prime, watermark.bumped): the read below is bounded by no snapshot.
    watermark._histories.clear()
    watermark._stale = False
    loaded = Article.objects.get(pk=article.pk)
    outcome = shout.outcome(loaded)
    assert not outcome.stored and outcome.reason is not None
    assert "loaded before" in outcome.reason
    assert shout.outcome(Article.objects.get(pk=article.pk)).stored  # the next one is


def test_related_and_querysets_in_the_context_count(fresh_store: Store) -> None:
    a = Article.objects.create(slug="e", title="old-e")
    b = Article.objects.create(slug="f", title="old-f")
    _warm()
    listed = list(Article.objects.filter(pk__in=[a.pk, b.pk]).order_by("pk"))
    evaluated = Article.objects.filter(pk__in=[a.pk, b.pk]).order_by("pk")
    assert len(evaluated) == 2
    _write_elsewhere(b.pk, "new-f")

    def titles(items: Any) -> Callable[[], str]:
        return lambda: ",".join(item.title for item in items)

    for label, items in (("list", listed), ("queryset", evaluated), ("dict", {"x": listed})):
        rows = items["x"] if isinstance(items, dict) else items
        text = render_fragment("titles", [label], "ctx", None, titles(rows), context_values=[items])
        assert text == "old-e,old-f"
        fresh = list(Article.objects.filter(pk__in=[a.pk, b.pk]).order_by("pk"))
        again = render_fragment(
            "titles", [label], "ctx", None, titles(fresh), context_values=[fresh]
        )
        assert again == "old-e,new-f", label


@cached
def loaded_articles(slug: str) -> list[Article]:
    return list(Article.objects.filter(slug=slug))


def test_instances_from_a_cached_hit_are_as_new_as_the_hit(fresh_store: Store) -> None:
    article = Article.objects.create(slug="g", title="same")
    assert loaded_articles.outcome("g").stored
    _warm()
    [from_hit] = loaded_articles("g")  # unpickled from the entry: read when its lookup began
    assert shout.outcome(from_hit).stored
    [again] = loaded_articles("g")
    _write_elsewhere(article.pk, "new")  # the list's own entry is invalidated too
    assert shout(again) == "SAME" and not shout.outcome(again).stored
    [fresh] = loaded_articles("g")
    assert shout(fresh) == "NEW"


def test_a_stamp_means_nothing_in_another_process() -> None:
    article = Article(pk=1, slug="h", title="t")
    watermark.stamp(article, watermark.Read(7))
    assert watermark.read_of(article) == 7
    assert watermark.read_of(copy.deepcopy(article)) == 7
    assert watermark.read_of(pickle.loads(pickle.dumps(article))) is None
    with watermark.decoding(3):
        assert watermark.read_of(pickle.loads(pickle.dumps(article))) == 3


def test_concurrent_writers_and_fragment_readers_never_see_an_older_title(
    fresh_store: Store,
) -> None:
    """Readers load the article, pause (a write may land and return), render the fragment; each
    notes the last write that had returned when it started. Nothing older may come back."""
    article = Article.objects.create(slug="race", title="v0")
    _warm()
    returned = [0]
    stale: list[tuple[int, str]] = []
    done = threading.Event()
    rng_lock = threading.Lock()
    rng = random.Random(7)

    def writer() -> None:
        try:
            for version in range(1, 121):
                Article.objects.filter(pk=article.pk).update(title=f"v{version}")
                returned[0] = version
                time.sleep(0.002)
        finally:
            done.set()
            connections.close_all()

    def reader() -> None:
        try:
            while not done.is_set():
                started_after = returned[0]
                loaded = Article.objects.get(pk=article.pk)
                with rng_lock:
                    pause = rng.random() * 0.004
                time.sleep(pause)
                text = _render(loaded)
                if int(text[1:]) < started_after:
                    stale.append((started_after, text))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not stale, stale[:5]
    assert _render(Article.objects.get(pk=article.pk)) == "v120"
