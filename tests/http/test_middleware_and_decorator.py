"""A view cached by ``cache_page`` under ``CacheMiddleware`` (issue 9 item 8): the view wins.

The rule: the middleware steps aside for a view decorated with ``cache_page`` (no lookup, no
store, no ``X-Freshcache`` of its own), so the decorator's options and outcome are the ones
that apply. The matrix: middleware on/off x decorated or not (function, async, class-based on
``dispatch`` and on ``get``) x anonymous/logged-in x query strings, over WSGI and ASGI.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import AsyncClient, Client, override_settings

import freshcache
from freshcache.http import url_tag
from freshcache.invalidation import invalidate_tags
from tests.http.conftest import state
from tests.http_app.views import RENDERS

SITE_WIDE = [*settings.MIDDLEWARE, "freshcache.middleware.CacheMiddleware"]

# The issue's requests: utm_source is outside the decorator's query_params=["page"].
QUERIES = ["?page=2", "?page=2&utm_source=z", "?utm_source=y&page=2", "?page=3", ""]
PAGES = ["2", "2", "2", "3", "1"]
# What cache_page(query_params=["page"], vary_on_user=True) does with them, for anyone.
DECORATED = ["miss", "hit", "hit", "miss", "miss"]
DECORATED_URLS = ["/t/listing/", "/t/listing-class/", "/t/listing-get/", "/t/async-listing/"]
COUNTERS = {
    "/t/listing/": "listing",
    "/t/listing-class/": "listing_class",
    "/t/listing-get/": "listing_get",
    "/t/async-listing/": "async_listing",
    "/t/listing-plain/": "listing_plain",
}


@pytest.fixture
def lookups(page_store: None, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every key the page store is asked for by a request, in order (not the second look a
    single-flight holder takes right after winning its lease: that is one request's miss)."""
    store = freshcache.store()
    seen: list[str] = []
    real_lookup, real_acquire = store.lookup, store.acquire
    holding = threading.local()

    def acquire(key: str, ttl: float) -> Any:
        token = real_acquire(key, ttl)
        holding.key = key if token is not None else None
        return token

    def lookup(key: str) -> Any:
        if getattr(holding, "key", None) != key:
            seen.append(key)
        holding.key = None
        return real_lookup(key)

    monkeypatch.setattr(store, "acquire", acquire)
    monkeypatch.setattr(store, "lookup", lookup)
    return seen


@pytest.fixture(params=[False, True], ids=["decorator-only", "with-middleware"])
def middleware(request: pytest.FixtureRequest, page_store: None) -> Iterator[bool]:
    if request.param:
        with override_settings(MIDDLEWARE=SITE_WIDE):
            yield True
    else:
        yield False


def _users() -> tuple[Any, Any]:
    model = get_user_model()
    return model.objects.create_user("ann"), model.objects.create_user("bob")


def _clients(kind: str, who: str) -> tuple[Any, str]:
    client: Any = Client() if kind == "wsgi" else AsyncClient()
    if who == "anonymous":
        return client, "anonymous"
    user = get_user_model().objects.get(username=who)
    client.force_login(user)
    return client, who


async def _get(client: Any, url: str) -> Any:
    if isinstance(client, AsyncClient):
        return await client.get(url)
    return await sync_to_async(client.get)(url)


def _observed(response: Any) -> tuple[str | None, str]:
    header = response.get("X-Freshcache")
    return (None if header is None else header.split(";")[0]), response.content.decode()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
@pytest.mark.parametrize("url", DECORATED_URLS)
async def test_a_decorated_view_behaves_the_same_with_or_without_the_middleware(
    middleware: bool, lookups: list[str], kind: str, url: str
) -> None:
    await sync_to_async(_users)()
    name = COUNTERS[url]
    for who in ("anonymous", "ann", "bob"):
        client, label = await sync_to_async(_clients)(kind, who)
        seen = [_observed(await _get(client, url + q)) for q in QUERIES]
        bodies = [f"{name} page={p} user={label}" for p in PAGES]
        expected = list(zip(DECORATED, bodies, strict=True))
        assert seen == expected, (who, middleware)
    # One lookup per request: the middleware looked nothing up, stored nothing.
    assert len(lookups) == 3 * len(QUERIES)
    assert len(freshcache.store()) == 3 * 3
    assert RENDERS[name] == 3 * 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
async def test_the_issue_requests_hit_one_entry_under_the_middleware(
    lookups: list[str], kind: str
) -> None:
    """``/?page=2&utm_source=z`` and ``/?utm_source=y&page=2`` share ``/?page=2``'s entry, and
    ``X-Freshcache`` reports the decorator's hit for a logged-in user with a session."""
    await sync_to_async(_users)()
    with override_settings(MIDDLEWARE=SITE_WIDE):
        client, _ = await sync_to_async(_clients)(kind, "ann")
        first = await _get(client, "/t/listing/?utm_source=y&page=2")
        assert first["X-Freshcache"] == "miss"
        for q in ("?page=2", "?page=2&utm_source=z", "?utm_source=y&page=2"):
            again = await _get(client, "/t/listing/" + q)
            assert again["X-Freshcache"] == "hit"
            assert again.content == b"listing page=2 user=ann"
    assert RENDERS["listing"] == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
async def test_an_undecorated_view_follows_the_middleware(
    middleware: bool, lookups: list[str], kind: str
) -> None:
    """The control: without ``cache_page`` the middleware's own rules apply (the whole query
    string is keyed; a session bypasses), and without either nothing is cached."""
    await sync_to_async(_users)()
    url = "/t/listing-plain/"
    for who in ("anonymous", "ann"):
        client, label = await sync_to_async(_clients)(kind, who)
        for round_ in ("first", "second"):
            seen = [_observed(await _get(client, url + q)) for q in QUERIES]
            if not middleware:
                states = [None] * len(QUERIES)
            elif who == "ann":
                states = ["bypass"] * len(QUERIES)
            else:
                states = ["miss" if round_ == "first" else "hit"] * len(QUERIES)
            bodies = [f"listing_plain page={p} user={label}" for p in PAGES]
            expected = list(zip(states, bodies, strict=True))
            assert seen == expected, (who, round_)
    if middleware:
        client, _ = await sync_to_async(_clients)(kind, "ann")
        response = await _get(client, url)
        assert response["X-Freshcache"] == "bypass; reason=request has a session"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
async def test_never_cache_under_the_middleware(lookups: list[str], kind: str) -> None:
    client: Any = Client() if kind == "wsgi" else AsyncClient()
    with override_settings(MIDDLEWARE=SITE_WIDE):
        for _ in range(2):
            plain = await _get(client, "/t/never-plain/")
            assert state(plain) == "bypass"
            assert "Cache-Control" in plain["X-Freshcache"]
            # cache_page + never_cache: the decorator's bypass, reported once, looked up once.
            decorated = await _get(client, "/t/never/")
            assert state(decorated) == "bypass"
            assert "Cache-Control" in decorated["X-Freshcache"]
    assert (RENDERS["never_plain"], RENDERS["not_cached"]) == (2, 2)
    assert len(lookups) == 4
    assert len(freshcache.store()) == 0


@pytest.mark.django_db(transaction=True)
def test_fragments_inside_a_page_cached_by_the_middleware(lookups: list[str]) -> None:
    """Nesting still works where it is meant to: an inner fragment's tags reach the page the
    middleware stores, also when the fragment was a hit."""
    client = Client()
    with override_settings(MIDDLEWARE=SITE_WIDE):
        assert state(client.get("/t/fragments-uncached/")) == "miss"
        assert state(client.get("/t/fragments-uncached/")) == "hit"
        # Another URL of the same view: a new page whose fragments are hits.
        other = client.get("/t/fragments-uncached/?x=1")
        assert state(other) == "miss"
        assert "[<inner 1> outer 1]" in other.content.decode()
        assert (RENDERS["inner"], RENDERS["outer"]) == (1, 1)
        invalidate_tags(["frag:inner"])
        after = client.get("/t/fragments-uncached/?x=1")
        assert state(after) == "miss"
        assert "[<inner 2> outer 2]" in after.content.decode()
        # A decorated page with fragments: the decorator's outcome.
        assert state(client.get("/t/fragments/?n=5")) == "miss"
        hit = client.get("/t/fragments/?n=5")
        assert state(hit) == "hit"
        assert "[<inner 3> outer 3]" in hit.content.decode()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
async def test_a_cached_function_inside_a_page_cached_by_the_middleware(
    lookups: list[str], kind: str
) -> None:
    client: Any = Client() if kind == "wsgi" else AsyncClient()
    with override_settings(MIDDLEWARE=SITE_WIDE):
        first = await _get(client, "/t/uses-cached/")
        assert (state(first), first.content) == ("miss", b"value 1")
        assert state(await _get(client, "/t/uses-cached/")) == "hit"
        await sync_to_async(invalidate_tags)([url_tag("/t/uses-cached/")])
        inner_hit = await _get(client, "/t/uses-cached/")
        assert (state(inner_hit), inner_hit.content) == ("miss", b"value 1")
        # The page stored after the inner hit depends on the inner value's tags.
        await sync_to_async(invalidate_tags)(["fn:1"])
        after = await _get(client, "/t/uses-cached/")
        assert (state(after), after.content) == ("miss", b"value 2")
        assert state(await _get(client, "/t/uses-cached/")) == "hit"
    assert RENDERS["uses_cached"] == 3


@pytest.mark.django_db(transaction=True)
def test_head_and_post_to_decorated_views_under_the_middleware(lookups: list[str]) -> None:
    client = Client()
    with override_settings(MIDDLEWARE=SITE_WIDE):
        assert state(client.get("/t/listing-get/?page=4")) == "miss"
        head = client.head("/t/listing-get/?page=4&utm_source=q")
        assert state(head) == "hit"
        post = client.post("/t/listing/")
        assert post["X-Freshcache"] == "bypass; reason=method POST"
    assert len(lookups) == 2
