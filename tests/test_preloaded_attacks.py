"""Attacks on read generations (watermark.py, inputs.py): data a fragment or ``@cached`` call
outside any cached computation is given, as old as a write that returned before the
computation, that carries no stamp or is not looked at. Each is stored, and served to a request
that starts after the write returned (rule 1), with the old value.

Same pattern as tests/test_preloaded_instances.py: a live process (``_warm``: it has seen the
store's sequence since), a writer in another thread that returns, then the computation.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from freshcache.http.fragments import render_fragment
from freshcache.stores import Store
from tests.conftest import mark_store_kind
from tests.http_app.models import Article
from tests.test_preloaded_instances import _render, _warm, _write_elsewhere, shout


@pytest.fixture(params=["memory", "database", "redis", "redis-cluster"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """The stores, and Redis Cluster (snapshots there are vectors of shard positions)."""
    return mark_store_kind(request)


def test_an_instance_created_by_this_request_then_written_elsewhere_is_not_stored(
    fresh_store: Store,
) -> None:
    """``objects.create()`` (and ``get_or_create()``'s created branch, ``save()`` of a new
    instance) builds the instance from what this request wrote, not from a query: no stamp,
    so the computation is taken to use nothing older than its own snapshot."""
    article = Article.objects.create(slug="created", title="old")
    _warm()
    _write_elsewhere(article.pk, "new")  # another request's write returns
    _warm()
    assert _render(article) == "old"  # this request's own copy: fine if not stored
    assert shout(article) == "OLD"
    # A request that starts after the write returned.
    assert _render(Article.objects.get(pk=article.pk)) == "new"
    assert shout(Article.objects.get(pk=article.pk)) == "NEW"


def test_get_or_create_created_instance_then_written_elsewhere_is_not_stored(
    fresh_store: Store,
) -> None:
    article, created = Article.objects.get_or_create(slug="goc", defaults={"title": "old"})
    assert created
    _warm()
    _write_elsewhere(article.pk, "new")
    _warm()
    assert shout(article) == "OLD"
    assert shout(Article.objects.get(pk=article.pk)) == "NEW"


def test_refresh_from_db_of_an_unstamped_instance_is_not_taken_as_current(
    fresh_store: Store,
) -> None:
    """``refresh_from_db()`` reads with a query but copies the fields onto the instance, whose
    ``_state`` (and stamp, here none) it keeps."""
    article = Article.objects.create(slug="refreshed", title="old")
    _warm()
    _write_elsewhere(article.pk, "mid")
    article.refresh_from_db()
    _warm()
    _write_elsewhere(article.pk, "new")
    _warm()
    assert shout(article) == "MID"
    assert shout(Article.objects.get(pk=article.pk)) == "NEW"


def test_an_instance_held_by_an_object_in_the_template_context_counts(
    fresh_store: Store,
) -> None:
    """A fragment keyed by the post's pk, its template reading ``card.article.title``: the
    context's ``card`` (a view-model, a form's ``instance``, a ``SimpleNamespace``) holds the
    instance loaded before the write; ``inputs.describe`` looks only into models, querysets,
    lists, tuples, sets, dicts and paginator pages."""
    article = Article.objects.create(slug="card", title="old")
    _warm()

    def render(card: SimpleNamespace) -> str:
        return render_fragment(
            "card", [card.article.pk], "attacks", None, lambda: card.article.title,
            context_values=[card],
        )  # fmt: skip

    loaded = Article.objects.get(pk=article.pk)
    _write_elsewhere(article.pk, "new")
    _warm()
    assert render(SimpleNamespace(article=loaded)) == "old"
    assert render(SimpleNamespace(article=Article.objects.get(pk=article.pk))) == "new"
