"""{% cachefresh %} nesting, the Jinja2 extension, the middleware, and register(urls=...)."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client, override_settings

import freshcache
from freshcache.invalidation import invalidate_tags
from freshcache.registry import register
from tests.http.conftest import state
from tests.http_app.models import Article, Label
from tests.http_app.views import RENDERS


def test_nested_fragments_russian_doll(client: Client) -> None:
    first = client.get("/t/fragments-uncached/").content.decode()
    assert "[<inner 1> outer 1]" in first
    assert "[<inner 1> outer 1]" in client.get("/t/fragments-uncached/").content.decode()
    invalidate_tags(["frag:outer"])
    # The outer fragment re-renders; the inner one is still valid and comes from the cache.
    assert "[<inner 1> outer 2]" in client.get("/t/fragments-uncached/").content.decode()
    invalidate_tags(["frag:inner"])
    # The inner tag bubbled into the outer fragment: both re-render.
    assert "[<inner 2> outer 3]" in client.get("/t/fragments-uncached/").content.decode()


def test_fragments_inside_a_cached_page(client: Client) -> None:
    client.get("/t/fragments/")
    assert state(client.get("/t/fragments/")) == "hit"
    invalidate_tags(["frag:inner"])
    response = client.get("/t/fragments/")
    assert state(response) == "miss"
    assert "[<inner 2> outer 2]" in response.content.decode()
    assert RENDERS["fragments"] == 2


JINJA = {
    "BACKEND": "django.template.backends.jinja2.Jinja2",
    "APP_DIRS": True,
    "NAME": "jinja2",
    "OPTIONS": {"extensions": ["freshcache.jinja2.FreshcacheExtension"]},
}


def test_jinja2_extension(client: Client) -> None:
    with override_settings(TEMPLATES=[*settings.TEMPLATES, JINJA]):
        assert client.get("/t/jinja/").content.decode().strip() == "[<inner 1> outer 1]"
        assert client.get("/t/jinja/").content.decode().strip() == "[<inner 1> outer 1]"
        invalidate_tags(["frag:inner"])
        assert client.get("/t/jinja/").content.decode().strip() == "[<inner 2> outer 2]"


def test_custom_placeholder_is_filled_per_request(client: Client) -> None:
    from freshcache.http import register_placeholder

    register_placeholder("test-greeting", lambda request: request.GET.get("name", "you"))
    assert client.get("/t/placeholder/?a=1").content.strip() == b"greeting: you."
    hit = client.get("/t/placeholder/?a=1")
    assert state(hit) == "hit"
    assert hit.content.strip() == b"greeting: you."
    assert "ETag" not in hit  # no validator: no 304 either


MIDDLEWARE = [*settings.MIDDLEWARE, "freshcache.middleware.CacheMiddleware"]


def test_middleware_caches_plain_views_and_respects_never_cache(client: Client) -> None:
    with override_settings(
        MIDDLEWARE=MIDDLEWARE,
        FRESHCACHE={"STORE": "memory://", "HEADER": True, "NEVER_CACHE_PATHS": ["/t/submit"]},
    ):
        first = client.get("/t/fragments-uncached/")
        assert state(first) == "miss"
        assert state(client.get("/t/fragments-uncached/")) == "hit"
        never = client.get("/t/never/")
        assert "Cache-Control" in never["X-Freshcache"]
        assert "X-Freshcache" not in client.get("/t/submit/")


def test_middleware_with_csrf_form(client: Client) -> None:
    with override_settings(MIDDLEWARE=MIDDLEWARE):
        a, b = Client(enforce_csrf_checks=True), Client(enforce_csrf_checks=True)
        page_a, page_b = a.get("/t/form/"), b.get("/t/form/")
        assert state(page_b) == "hit"
        assert page_a.content != page_b.content
        name = settings.CSRF_COOKIE_NAME
        assert a.cookies[name].value != b.cookies[name].value


@pytest.fixture
def registered(page_store: None) -> None:
    register(Article, urls=lambda a: [a.get_absolute_url(), "/t/plain/"])
    register(Label, urls=lambda label: [f"/t/label/{label.pk}/"])


def test_register_invalidates_listed_urls(client: Client, registered: None) -> None:
    article = Article.objects.create(slug="a", title="A")
    client.get("/t/article/a/")
    client.get("/t/plain/")
    client.get("/t/article/b/")
    article.title = "A2"
    article.save()
    assert state(client.get("/t/article/a/")) == "miss"
    assert state(client.get("/t/plain/")) == "miss"
    assert state(client.get("/t/article/b/")) == "hit"


def test_register_old_url_on_slug_change_and_delete(client: Client, registered: None) -> None:
    article = Article.objects.create(slug="old", title="A")
    client.get("/t/article/old/")
    article.slug = "new"
    article.save()
    assert state(client.get("/t/article/old/")) == "miss"
    client.get("/t/article/new/")
    article.delete()
    assert state(client.get("/t/article/new/")) == "miss"


def test_register_m2m_both_directions(client: Client, registered: None) -> None:
    article = Article.objects.create(slug="m", title="M")
    label = Label.objects.create(name="x")
    client.get("/t/article/m/")
    article.labels.add(label)
    assert state(client.get("/t/article/m/")) == "miss"
    label.articles.remove(article)
    assert state(client.get("/t/article/m/")) == "miss"
    label.articles.add(article)
    client.get("/t/article/m/")
    label.articles.clear()
    assert state(client.get("/t/article/m/")) == "miss"


def test_stored_page_is_signed_json_not_pickle(page_store: None) -> None:
    from freshcache.http.page import Page, PageCodec

    codec = PageCodec()
    page = Page(200, [("Content-Type", "text/html")], b"body", [(2, "csrf_token")], [], True, "d")
    assert codec.loads(codec.dumps(page)) == page
    with pytest.raises(Exception):  # noqa: B017 - any error is a miss for the core
        codec.loads(b"\x80\x04garbage")
    assert freshcache.store() is not None
