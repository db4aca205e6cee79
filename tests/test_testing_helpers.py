"""``freshcache.testing``: the helpers users put in their own test suites."""

from __future__ import annotations

import time

import psycopg
import pytest
from django.db import transaction
from django.test import override_settings

from blog.models import Author, Comment, Post
from freshcache import cached
from freshcache.testing import assert_invalidates, assert_still_cached
from tests.conftest import store_url
from tests.log.conftest import outside_params


@cached
def comment_bodies(post_id: int) -> list[str]:
    return list(Comment.objects.filter(post_id=post_id).values_list("body", flat=True))


@pytest.fixture
def posts(fresh_store: object) -> tuple[Post, Post]:
    author = Author.objects.create(name="Ann", slug="ann")
    return (
        Post.objects.create(author=author, title="One", slug="one", body="1"),
        Post.objects.create(author=author, title="Two", slug="two", body="2"),
    )


def test_function_targets(posts: tuple[Post, Post]) -> None:
    one, two = posts
    with assert_invalidates(comment_bodies, one.pk), assert_still_cached(comment_bodies, two.pk):
        Comment.objects.create(post=one, author_name="x", body="hello")


def test_assert_invalidates_fails_when_nothing_changed(posts: tuple[Post, Post]) -> None:
    one, two = posts
    with (
        pytest.raises(AssertionError, match=r"expected the block to invalidate .*comment_bodies"),
        assert_invalidates(comment_bodies, one.pk),
    ):
        Comment.objects.create(post=two, author_name="x", body="elsewhere")


def test_assert_still_cached_fails_when_invalidated(posts: tuple[Post, Post]) -> None:
    one, _ = posts
    with (
        pytest.raises(AssertionError, match=r"to stay cached, but the block invalidated it"),
        assert_still_cached(comment_bodies, one.pk),
    ):
        Comment.objects.create(post=one, author_name="x", body="hello")


def test_page_targets(posts: tuple[Post, Post], store_kind: str) -> None:
    one, two = posts
    # The post page counts its views: declared volatile, as the example's settings do.
    # VOLATILE_FIELDS is baked into the log triggers: changing it means reinstalling them, as
    # `migrate` or `manage.py freshcache changefeed install` does (check W003 says so).
    volatile = {"STORE": store_url(store_kind), "VOLATILE_FIELDS": ["blog.Post.view_count"]}
    with override_settings(FRESHCACHE=volatile):
        _install_triggers()
        try:
            with (
                assert_invalidates(one.get_absolute_url()),
                assert_still_cached(two.get_absolute_url()),
            ):
                Comment.objects.create(post=one, author_name="x", body="on one")
        finally:
            with override_settings(FRESHCACHE={"STORE": "memory://"}):
                _install_triggers()


def _install_triggers() -> None:
    from django.db import connection

    from freshcache.log import triggers

    if connection.vendor == "postgresql":
        triggers.install()


def test_refuses_to_run_inside_a_transaction_that_never_commits(posts: tuple[Post, Post]) -> None:
    with (
        transaction.atomic(),
        pytest.raises(RuntimeError, match="use TransactionTestCase"),
        assert_invalidates(comment_bodies, posts[0].pk),
    ):
        pass


def test_bad_targets_are_explained() -> None:
    with (
        pytest.raises(TypeError, match=r"a @cached function .* or a URL path"),
        assert_invalidates(len),
    ):
        pass
    with (
        pytest.raises(TypeError, match="a page target is a URL path"),
        assert_invalidates("post/7"),
    ):
        pass


@pytest.mark.parametrize("store_kind", ["database"], indirect=True)
def test_a_moment_of_bypass_after_the_block_neither_passes_nor_fails_an_assertion(
    posts: tuple[Post, Post], store_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay applies each log row that no writer bumped (here a write from outside
    Django); while such a batch is being applied, a hit from the database store (no
    ``apply_grace``) is refused (a bypass: ``Relay.hit_refused``). That moment says nothing
    about the entry: the helpers probe again (CI failed once on it)."""
    from freshcache.log.relay import get_relay
    from freshcache.stores.database import DatabaseStore

    real_apply = DatabaseStore.apply
    stalls = []

    def slow_apply(self: DatabaseStore, *args: object, **kwargs: object) -> object:
        stalls.append(1)
        time.sleep(0.4)
        return real_apply(self, *args, **kwargs)  # type: ignore[arg-type]

    one, two = posts
    monkeypatch.setattr(DatabaseStore, "apply", slow_apply)
    with (
        pytest.raises(AssertionError, match=r"expected the block to invalidate .*comment_bodies"),
        assert_invalidates(comment_bodies, one.pk),
        assert_still_cached(comment_bodies, one.pk),
    ):
        stalls.clear()  # the posts' own rows were applied while the helpers warmed up
        with psycopg.connect(**outside_params(), autocommit=True) as outside:
            outside.execute(
                "INSERT INTO blog_comment (post_id, author_name, body, created_at, approved) "
                "VALUES (%s, 'x', 'elsewhere', now(), true)",
                [two.pk],
            )
        deadline = time.monotonic() + 5
        while not stalls:  # the relay has read the write's row and is applying it
            assert time.monotonic() < deadline, "the relay never applied the write's log row"
            time.sleep(0.005)
        assert get_relay().hit_refused(get_relay().failures)
    assert len(stalls) >= 1
