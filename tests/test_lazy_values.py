"""A value whose reads happen after ``@cached`` returns must not escape capture (issue 9, item 2).

``return Post.objects.filter(...)`` used to run its query after the scope closed (when the core
pickled it): the entry was stored with no tags and served stale forever. Every kind of value
that reads later is covered here, each by what a user observes: whether it was stored, what a
write does to the next call, how many queries the caller's use of the value runs, or the
``TypeError`` that names the fix.

The last test is issue 9, item 9's second scenario: a write that capture cannot see, inside a
transaction that rolls back.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.sessions.models import Session
from django.db import connection, transaction
from django.db.models import Count, QuerySet
from django.test import override_settings
from django.utils.functional import SimpleLazyObject, lazy

import freshcache
from blog.models import Author, Comment, Post
from freshcache import cached, depends_on, invalidate
from freshcache.core import HIT_BEFORE_LOG
from freshcache.functions import UNTRACKED_READS
from freshcache.stores import Store

pytestmark = pytest.mark.django_db(transaction=True)

DAY = datetime.datetime(2026, 1, 5, 12, tzinfo=datetime.UTC)


@pytest.fixture
def memory_store(transactional_db: None) -> Iterator[Store]:
    """The in-process store, empty; no relay (these tests pin what the ORM capture sees)."""
    with override_settings(FRESHCACHE={"STORE": "memory://", "RELAY": False}):
        store = freshcache.store()
        store.clear()
        yield store
        store.clear()


def seed() -> tuple[Author, Post]:
    ann = Author.objects.create(name="Ann", slug="ann")
    bob = Author.objects.create(name="Bob", slug="bob")
    first = Post.objects.create(
        author=ann, title="b-first", slug="first", body="x", published_at=DAY
    )
    Post.objects.create(author=bob, title="a-bob", slug="bob-1", body="x", published_at=DAY)
    Comment.objects.create(post=first, author_name="cy", body="one")
    return ann, first


def new_post(author: Author, first: Post) -> None:
    later = DAY + datetime.timedelta(days=3)
    Post.objects.create(author=author, title="a-new", slug="new", body="x", published_at=later)


def new_comment(author: Author, first: Post) -> None:
    Comment.objects.create(post=first, author_name="di", body="two")


# name -> (the queryset a cached function returns, what a caller observes of it, a write that
# changes what it observes). The write is the one only this flavour's own reads can notice.
Flavour = tuple[Callable[[int], Any], Callable[[Any], Any], Callable[[Author, Post], None]]
FLAVOURS: dict[str, Flavour] = {
    "filter": (
        lambda a: Post.objects.filter(author_id=a).order_by("title"),
        lambda v: [p.title for p in v],
        new_post,
    ),
    "values": (
        lambda a: Post.objects.filter(author_id=a).order_by("title").values("title"),
        lambda v: [r["title"] for r in v],
        new_post,
    ),
    "values_list": (
        lambda a: Post.objects.filter(author_id=a).order_by("title").values_list("title", "slug"),
        lambda v: [tuple(r) for r in v],
        new_post,
    ),
    "values_list_flat": (
        lambda a: (
            Post.objects.filter(author_id=a).order_by("title").values_list("title", flat=True)
        ),
        lambda v: list(v),
        new_post,
    ),
    "values_list_named": (
        lambda a: (
            Post.objects.filter(author_id=a).order_by("title").values_list("title", named=True)
        ),
        lambda v: [r.title for r in v],
        new_post,
    ),
    "dates": (
        lambda a: Post.objects.filter(author_id=a).dates("published_at", "day"),
        lambda v: list(v),
        new_post,
    ),
    "select_related": (
        lambda a: Post.objects.filter(author_id=a).select_related("author").order_by("title"),
        lambda v: [(p.title, p.author.name) for p in v],
        new_post,
    ),
    "prefetch_related": (
        lambda a: Post.objects.filter(author_id=a).prefetch_related("comments").order_by("title"),
        lambda v: [(p.title, sorted(c.body for c in p.comments.all())) for p in v],
        new_comment,
    ),
    "annotate": (
        lambda a: Post.objects.filter(author_id=a).annotate(n=Count("comments")).order_by("title"),
        lambda v: [(p.title, p.n) for p in v],
        new_comment,
    ),
    "reverse_relation": (
        lambda a: Comment.objects.filter(post__author_id=a).order_by("body"),
        lambda v: [c.body for c in v],
        new_comment,
    ),
    "union": (
        lambda a: (
            Post.objects.filter(author_id=a)
            .values_list("title", flat=True)
            .union(Comment.objects.filter(post__author_id=a).values_list("body", flat=True))
        ),
        lambda v: sorted(v),
        new_comment,
    ),
}


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_every_queryset_flavour_is_read_inside_its_computation(
    flavour: str, memory_store: Store, django_assert_num_queries: Any
) -> None:
    build, observe, write = FLAVOURS[flavour]
    ann, first = seed()

    @cached(name=f"lazy-values:{flavour}")
    def listing(author_id: int) -> Any:
        return build(author_id)  # not evaluated here

    miss = listing.outcome(ann.pk)
    assert miss.stored, miss.reason
    assert miss.tags, "the query ran outside the computation: an entry nothing invalidates"
    assert isinstance(miss.value, QuerySet)  # still a QuerySet for the caller...
    with django_assert_num_queries(0):
        seen = observe(miss.value)  # ...whose rows were read inside the call
        assert miss.value.count() == len(miss.value) and miss.value.exists()
    assert seen == observe(build(ann.pk))

    hit = listing.outcome(ann.pk)
    assert hit.hit
    with django_assert_num_queries(0):
        assert observe(hit.value) == seen
        assert hit.value.count() == len(seen) and hit.value.exists()

    write(ann, first)
    after = listing.outcome(ann.pk)
    assert not after.hit
    assert observe(after.value) == observe(build(ann.pk)) != seen


def test_the_issue_reproduction_on_every_store(fresh_store: Store) -> None:
    ann, _ = seed()

    @cached
    def posts(author_id: int) -> QuerySet[Post]:
        return Post.objects.filter(author_id=author_id).order_by("title")

    first = posts.outcome(ann.pk)
    assert first.stored, first.reason
    assert any(t.startswith("blog.post") for t in first.tags), first.tags
    assert [p.title for p in posts(ann.pk)] == ["b-first"]
    Post.objects.create(author=ann, title="a-new", slug="new", body="x")
    assert [p.title for p in posts(ann.pk)] == ["a-new", "b-first"]
    deadline = time.monotonic() + 10
    while True:  # a hit is refused while this process's relay holds the create's log row
        again = posts.outcome(ann.pk)
        if again.hit or again.reason != HIT_BEFORE_LOG or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert again.hit, again.reason


def test_invalidate_a_model_reaches_its_predicate_readers(memory_store: Store) -> None:
    ann, _ = seed()

    @cached
    def posts(author_id: int) -> QuerySet[Post]:
        return Post.objects.filter(author_id=author_id).order_by("title")

    assert posts.outcome(ann.pk).stored
    invalidate(Post)  # "the whole table" (docs/api.md)
    assert not posts.outcome(ann.pk).hit


def test_invalidate_an_instance_reaches_the_listings_that_show_it(memory_store: Store) -> None:
    ann, first = seed()

    @cached
    def titles(author_id: int) -> list[str]:
        return list(Post.objects.filter(author_id=author_id).values_list("title", flat=True))

    @cached
    def other(author_id: int) -> list[str]:
        return list(Post.objects.filter(author_id=author_id).values_list("slug", flat=True))

    assert titles.outcome(ann.pk).stored
    bob = Author.objects.get(slug="bob")
    assert other.outcome(bob.pk).stored
    invalidate(first)  # a row changed by hand: its listings must miss, bob's need not
    assert not titles.outcome(ann.pk).hit
    assert other.outcome(bob.pk).hit


def test_a_queryset_inside_a_container_is_read_inside_the_computation(fresh_store: Store) -> None:
    ann, first = seed()

    @cached
    def page_context(author_id: int) -> dict[str, Any]:
        return {
            "author": Author.objects.get(pk=author_id),
            "posts": Post.objects.filter(author_id=author_id).order_by("title"),
            "comments": [Comment.objects.filter(post__author_id=author_id)],
        }

    out = page_context.outcome(ann.pk)
    assert out.stored, out.reason
    assert any(t.startswith("blog.post") for t in out.tags), out.tags
    assert any(t.startswith("blog.comment") for t in out.tags), out.tags
    assert page_context.outcome(ann.pk).hit
    new_comment(ann, first)
    context = page_context(ann.pk)
    assert sorted(c.body for c in context["comments"][0]) == ["one", "two"]
    new_post(ann, first)
    assert [p.title for p in page_context(ann.pk)["posts"]] == ["a-new", "b-first"]


def test_a_queryset_is_evaluated_inside_the_call_even_when_nothing_is_stored(
    memory_store: Store, django_assert_num_queries: Any
) -> None:
    ann, _ = seed()

    @cached
    def posts(author_id: int) -> QuerySet[Post]:
        return Post.objects.filter(author_id=author_id)

    with override_settings(FRESHCACHE={"STORE": "memory://", "RELAY": False, "ENABLED": False}):
        out = posts.outcome(ann.pk)
    assert (out.stored, out.reason) == (False, "disabled")
    with django_assert_num_queries(0):  # the same QuerySet, cached or not: no surprise query
        assert [p.title for p in out.value] == ["b-first"]


@pytest.mark.parametrize(
    "returned",
    [
        lambda: Post.objects,
        lambda: Post.objects.get(slug="first").comments,
        lambda: Post.objects.get(slug="first").tags,
        lambda: Author.objects.get(slug="ann").posts,
    ],
    ids=["manager", "related-manager", "m2m-manager", "reverse-fk-manager"],
)
def test_a_manager_is_refused_naming_the_fix(
    returned: Callable[[], Any], memory_store: Store
) -> None:
    seed()
    f = cached(name="lazy-values:manager")(returned)
    for _ in range(2):  # every call, never a stored entry
        with pytest.raises(TypeError, match=r"returned a manager of \w+, which holds no rows"):
            f()
    with pytest.raises(TypeError, match=r"return its rows: `\.all\(\)`"):
        f()


def _generator() -> Iterator[str]:
    yield from Post.objects.values_list("title", flat=True)


@pytest.mark.parametrize(
    "returned",
    [
        lambda: Post.objects.filter(title__startswith="b").iterator(),
        lambda: Post.objects.values_list("title", flat=True).iterator(chunk_size=1),
        _generator,
        lambda: (p.title for p in Post.objects.all()),
        lambda: map(str, Post.objects.all()),
        lambda: iter(Post.objects.all()),
    ],
    ids=["iterator", "values-iterator", "generator-function", "genexpr", "map", "iter"],
)
def test_iterators_and_generators_are_refused_naming_the_fix(
    returned: Callable[[], Any], memory_store: Store
) -> None:
    seed()
    f = cached(name="lazy-values:iterator")(returned)
    for _ in range(2):  # every call, never a stored entry
        with pytest.raises(TypeError, match=r"returned an iterator .*`return list\(\.\.\.\)`"):
            f()


def test_a_raw_queryset_is_refused_naming_the_fix(memory_store: Store) -> None:
    seed()

    @cached
    def raw_posts() -> Any:
        return Post.objects.raw("SELECT * FROM blog_post")

    with pytest.raises(TypeError, match=r"RawQuerySet.*list\(Model\.objects\.raw\(\.\.\.\)\)"):
        raw_posts()

    @cached
    def raw_list() -> list[str]:
        return [p.title for p in Post.objects.raw("SELECT * FROM blog_post ORDER BY title")]

    out = raw_list.outcome()
    assert out.stored and "blog.post" in out.tags


def test_a_coroutine_returned_by_a_sync_function_is_refused(memory_store: Store) -> None:
    async def count() -> int:
        return await Post.objects.acount()

    @cached
    def not_awaited() -> Any:
        return count()

    with pytest.raises(TypeError, match=r"awaitable \(coroutine\).*`async def` and `await`"):
        not_awaited()


async def test_an_async_iterator_is_refused(memory_store: Store) -> None:
    @cached
    async def stream() -> Any:
        return Post.objects.all().__aiter__()

    with pytest.raises(TypeError, match=r"async iterator .*\[x async for x in \.\.\.\]"):
        await stream()


async def test_async_functions_settle_querysets_off_the_event_loop(memory_store: Store) -> None:
    ann, first = await sync_to_async(seed)()

    @cached
    async def posts(author_id: int) -> QuerySet[Post]:
        return Post.objects.filter(author_id=author_id).order_by("title")

    @cached
    async def context(author_id: int) -> dict[str, Any]:
        return {"comments": Comment.objects.filter(post__author_id=author_id)}

    out = await posts.outcome(ann.pk)  # type: ignore[attr-defined]
    assert out.stored, out.reason
    assert [p.title for p in out.value] == ["b-first"]  # evaluated: no query in the loop
    ctx = await context.outcome(ann.pk)  # type: ignore[attr-defined]
    assert ctx.stored, ctx.reason
    assert any(t.startswith("blog.comment") for t in ctx.tags), ctx.tags
    await sync_to_async(new_post)(ann, first)
    await sync_to_async(new_comment)(ann, first)
    assert [p.title for p in await posts(ann.pk)] == ["a-new", "b-first"]
    assert sorted(c.body for c in (await context(ann.pk))["comments"]) == ["one", "two"]
    with override_settings(FRESHCACHE={"STORE": "memory://", "RELAY": False, "ENABLED": False}):
        bypassed = await posts.outcome(ann.pk)  # type: ignore[attr-defined]
    assert [p.title for p in bypassed.value] == ["a-new", "b-first"]  # evaluated, not stored
    await sync_to_async(lambda: connection.close())()


def test_a_lazy_object_is_evaluated_inside_the_computation(memory_store: Store) -> None:
    ann, first = seed()

    @cached
    def count(author_id: int) -> Any:
        return SimpleLazyObject(lambda: Post.objects.filter(author_id=author_id).count())

    @cached
    def titles(author_id: int) -> Any:
        return SimpleLazyObject(lambda: Post.objects.filter(author_id=author_id).order_by("title"))

    out = count.outcome(ann.pk)
    assert out.stored and out.tags, out
    assert out.value == 1 and type(out.value) is int  # what it wraps, as a hit returns it
    assert count.outcome(ann.pk).hit
    listed = titles.outcome(ann.pk)
    assert listed.stored and isinstance(listed.value, QuerySet)
    new_post(ann, first)
    assert count(ann.pk) == 2
    assert [p.title for p in titles(ann.pk)] == ["a-new", "b-first"]


def _post_count() -> int:
    return Post.objects.count()


def test_a_lazy_promise_stays_lazy_and_is_never_frozen(memory_store: Store) -> None:
    """``lazy()`` is re-evaluated at every use (gettext_lazy must follow the active language),
    so it is stored as a promise: nothing read through it is frozen in the entry."""
    ann, first = seed()
    lazy_count = lazy(_post_count, int)

    @cached
    def counter() -> Any:
        return lazy_count()

    assert counter.outcome().stored
    hit = counter.outcome()
    assert hit.hit
    assert int(hit.value) == 2
    new_post(ann, first)
    assert int(counter()) == 3  # the stored promise reads again, at use


def test_a_computation_that_read_untracked_data_is_not_stored_and_logs_once(
    memory_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    @cached
    def clock() -> Any:
        with connection.cursor() as cursor:
            cursor.execute("SELECT now()")  # raw SQL naming no table: no tag to depend on
            return cursor.fetchone()[0]

    @cached
    def sessions() -> int:
        return Session.objects.count()  # an EXCLUDEd model: its reads are not tracked

    with caplog.at_level(logging.WARNING, logger="freshcache"):
        for _ in range(3):
            out = clock.outcome()
            assert (out.stored, out.reason) == (False, UNTRACKED_READS)
        assert sessions.outcome().reason == UNTRACKED_READS
    warnings = [  # (not the journal's flush thread's, which may time out on a loaded machine)
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "journal" not in r.getMessage()
    ]
    assert len(warnings) == 2, warnings  # one per function, not one per call
    assert "clock() ran 1 database queries but depends on no tag" in warnings[0]
    assert "depends_on(" in warnings[0]


def test_a_tagless_computation_that_read_nothing_is_stored(memory_store: Store) -> None:
    @cached
    def constant() -> int:
        return 42

    @cached
    def named() -> int:
        depends_on("weather:london")
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return int(cursor.fetchone()[0])

    assert constant.outcome().stored
    assert constant.outcome().hit
    assert named.outcome().stored  # the reads are untracked, but it names its dependency


def test_a_query_that_never_reached_the_database_is_refused_too(memory_store: Store) -> None:
    """docs/limits.md: capture cannot tell ``pk__in=[]`` (no SQL) from an untracked read."""

    @cached
    def none_of_them() -> list[Post]:
        return list(Post.objects.filter(pk__in=[]))

    @cached
    def named() -> list[Post]:
        depends_on(Post)
        return list(Post.objects.filter(pk__in=[]))

    assert none_of_them.outcome().reason == UNTRACKED_READS
    assert named.outcome().stored


def test_an_untracked_inner_read_keeps_the_outer_result_unstored(memory_store: Store) -> None:
    ann, _ = seed()

    @cached
    def inner() -> int:
        return Session.objects.count()

    @cached
    def outer(author_id: int) -> tuple[int, int]:
        return inner(), Post.objects.filter(author_id=author_id).count()

    out = outer.outcome(ann.pk)
    assert (out.stored, out.reason) == (False, UNTRACKED_READS)


@pytest.mark.parametrize("warm", [True, False], ids=["cached-before", "not-cached-before"])
def test_rollback_after_an_unseen_write_and_invalidate_serves_the_committed_value(
    fresh_store: Store, warm: bool
) -> None:
    """Issue 9, item 9: a cached function writes through the driver's own cursor (capture cannot
    see it), calls ``invalidate()`` itself and reads; the block rolls back. Warm: the read inside
    must not be served the entry stored before. Cold: the read inside must not be stored."""
    _, first = seed()

    @cached
    def title(pk: int) -> str:
        return Post.objects.get(pk=pk).title

    @cached
    def rename(pk: int, new: str) -> str:
        with connection.connection.cursor() as cursor:  # the driver's cursor: no capture
            cursor.execute("UPDATE blog_post SET title = %s WHERE id = %s", [new, pk])
        invalidate(Post.objects.get(pk=pk))
        return title(pk)

    if warm:
        assert title.outcome(first.pk).stored
        assert title.outcome(first.pk).hit

    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        out = rename.outcome(first.pk, "uncommitted")
        assert out.value == "uncommitted"  # this transaction sees its own write
        assert not out.stored
        inner = title.outcome(first.pk)
        assert (inner.value, inner.hit, inner.stored) == ("uncommitted", False, False)
        raise Rollback

    assert Post.objects.get(pk=first.pk).title == "b-first"
    assert title(first.pk) == "b-first"
    assert title.outcome(first.pk).value == "b-first"
