"""``freshcache.testing`` on async targets: an ``async def`` view served by Django's test
``Client`` (which runs it in asgiref's loop thread) and an ``async`` ``@cached`` function."""

from __future__ import annotations

import pytest

from blog.models import Author, Comment, Post
from freshcache import cached
from freshcache.invalidation import invalidate_tags
from freshcache.testing import assert_invalidates, assert_still_cached


@cached
async def async_bodies(post_id: int) -> list[str]:
    return [c.body async for c in Comment.objects.filter(post_id=post_id)]


def test_an_async_page(page_store: None) -> None:
    with assert_invalidates("/t/async/7/"), assert_still_cached("/t/async/8/"):
        invalidate_tags(["http:async:7"])
    with (
        pytest.raises(AssertionError, match="still served from the cache"),
        assert_invalidates("/t/async/7/"),
    ):
        invalidate_tags(["http:async:8"])


def test_an_async_cached_function(page_store: None) -> None:
    author = Author.objects.create(name="Ann", slug="ann")
    one = Post.objects.create(author=author, title="One", slug="one", body="1")
    two = Post.objects.create(author=author, title="Two", slug="two", body="2")
    with assert_invalidates(async_bodies, one.pk), assert_still_cached(async_bodies, two.pk):
        Comment.objects.create(post=one, author_name="x", body="hi")
