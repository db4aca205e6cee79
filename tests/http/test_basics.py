"""cache_page basics: hit/miss, invalidation, ETag/304, HEAD, async, class-based views."""

from __future__ import annotations

import pytest
from django.test import AsyncClient, Client

from freshcache.invalidation import invalidate_tags
from tests.http.conftest import state
from tests.http_app.views import RENDERS


def test_second_get_is_a_hit_until_a_tag_is_invalidated(client: Client) -> None:
    first = client.get("/t/plain/")
    assert first.status_code == 200
    assert state(first) == "miss"
    second = client.get("/t/plain/")
    assert state(second) == "hit"
    assert second.content == first.content == b"plain render 1"
    invalidate_tags(["http:plain"])
    third = client.get("/t/plain/")
    assert state(third) == "miss"
    assert third.content == b"plain render 2"


def test_url_tag_invalidates_the_page(client: Client) -> None:
    from freshcache.http import url_tag

    client.get("/t/plain/")
    invalidate_tags([url_tag("https://elsewhere.example/t/plain/?x=1")])
    assert state(client.get("/t/plain/")) == "miss"


def test_etag_and_304_without_calling_the_view(client: Client) -> None:
    first = client.get("/t/plain/")
    etag = first["ETag"]
    assert etag.startswith('"')  # strong
    assert first["Cache-Control"] == "no-cache"
    again = client.get("/t/plain/", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again["ETag"] == etag
    assert RENDERS["plain"] == 1
    invalidate_tags(["http:plain"])
    changed = client.get("/t/plain/", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed["ETag"] != etag
    assert changed.content == b"plain render 2"


def test_head_shares_the_get_entry_but_never_stores(client: Client) -> None:
    head = client.head("/t/plain/")
    assert head.status_code == 200
    assert state(head) == "bypass"
    assert "HEAD" in head["X-Freshcache"]
    assert state(client.get("/t/plain/")) == "miss"
    head = client.head("/t/plain/")
    assert state(head) == "hit"
    assert head.content == b""


def test_head_on_a_get_only_view_is_not_a_500(client: Client) -> None:
    response = client.head("/t/get-only/")
    assert response.status_code == 405
    assert state(response) == "bypass"
    assert client.get("/t/get-only/").status_code == 200
    assert state(client.get("/t/get-only/")) == "hit"


def test_class_based_view_through_method_decorator(client: Client) -> None:
    assert client.get("/t/class/").content == b"class render 1"
    hit = client.get("/t/class/")
    assert state(hit) == "hit"
    assert hit.content == b"class render 1"


def test_tags_option_with_a_callable(client: Client) -> None:
    client.get("/t/article/a/")
    client.get("/t/article/b/")
    invalidate_tags(["article:a"])
    assert state(client.get("/t/article/a/")) == "miss"
    assert state(client.get("/t/article/b/")) == "hit"


@pytest.mark.asyncio
async def test_async_view(page_store: None) -> None:
    client = AsyncClient()
    first = await client.get("/t/async/")
    assert state(first) == "miss"
    second = await client.get("/t/async/")
    assert state(second) == "hit"
    assert second.content == b"async render 1"


def test_post_bypasses(client: Client) -> None:
    response = client.post("/t/plain/")
    assert state(response) == "bypass"
    assert "method POST" in response["X-Freshcache"]
