"""Soundness by differential testing: random ORM reads, cached, against random writes.

A Hypothesis state machine interleaves reads (every read shape capture treats differently:
predicates, covered joins, table fallbacks, aggregates, slices, subqueries, prefetches, raw SQL,
multi-table inheritance, m2m through models) wrapped in ``@cached``, with writes through every
write path (``save``, ``delete`` with cascades and SET_NULL, ``QuerySet.update/delete``,
``bulk_create`` with conflicts, ``bulk_update``, ``get_or_create``, ``update_or_create``, m2m
managers from both sides, custom through rows, raw SQL, and batches in ``atomic()`` blocks
that commit or roll back). After every step, every read cached so far must return what the same
read returns uncached.

CI runs a fixed, derandomized budget; ``FRESHCACHE_HYPOTHESIS_PROFILE=long`` runs a longer one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ObjectDoesNotExist
from django.db import DatabaseError, connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    rule,
    run_state_machine_as_test,
)

import freshcache
from blog.models import Author, Comment, Post, Tag
from freshcache import cached
from tests.capture_app.models import Group, Membership, Person, Place, Restaurant

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PROFILES = {
    "ci": settings(
        max_examples=60,
        stateful_step_count=30,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    ),
    "long": settings(
        max_examples=400,
        stateful_step_count=60,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    ),
}

ID = st.integers(min_value=1, max_value=5)
WORD = st.sampled_from(["a", "b", "xa", "xb", "c"])

# Reads ------------------------------------------------------------------------------------


def _tag_posts(t: int) -> list[str] | None:
    tag = Tag.objects.filter(pk=t).first()
    return None if tag is None else [p.title for p in tag.posts.order_by("pk")]


def _members(g: int) -> list[str]:
    return [p.name for p in Group(pk=g).members.order_by("pk")]


def _raw_titles(a: int) -> list[str]:
    return [
        p.title
        for p in Post.objects.raw("SELECT * FROM blog_post WHERE author_id = %s ORDER BY id", [a])
    ]


def _cursor_count(p: int) -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM blog_comment WHERE post_id = %s", [p])
        return int(cur.fetchone()[0])


READS: dict[str, tuple[Any, Callable[..., Any]]] = {
    "comments_of_post": (
        st.tuples(ID),
        lambda p: list(Comment.objects.filter(post_id=p).order_by("pk").values_list("pk", "body")),
    ),
    "post_by_slug": (
        st.tuples(ID),
        lambda s: Post.objects.filter(slug=f"s{s}").values_list("pk", "title").first(),
    ),
    "post_with_author": (
        st.tuples(ID),
        lambda p: [
            (x.title, x.author.name) for x in Post.objects.filter(pk=p).select_related("author")
        ],
    ),
    "count_comments": (st.tuples(ID), lambda p: Comment.objects.filter(post_id=p).count()),
    "front": (
        st.tuples(st.integers(1, 3)),
        lambda n: [
            (p.pk, p.title, p.n)
            for p in Post.objects.annotate(n=Count("comments")).order_by("-pk")[:n]
        ],
    ),
    "tag_posts": (st.tuples(ID), _tag_posts),
    "post_tags": (
        st.tuples(ID),
        lambda p: list(Tag.objects.filter(posts=p).order_by("pk").values_list("name", flat=True)),
    ),
    "comments_deep": (
        st.tuples(ID),
        lambda p: [
            (c.body, c.post.title, c.post.author.name)
            for c in Comment.objects.filter(post_id=p).select_related("post__author").order_by("pk")
        ],
    ),
    "comments_by_body_related": (
        st.tuples(WORD),
        lambda w: [
            (c.pk, c.post.title, c.post.slug)
            for c in Comment.objects.filter(body=w).select_related("post").order_by("pk")
        ],
    ),
    "slice_by_joined": (
        st.tuples(st.integers(1, 3)),
        lambda n: [
            (c.pk, c.post.title)
            for c in Comment.objects.select_related("post").order_by("post__title", "pk")[:n]
        ],
    ),
    "posts_by_author": (
        st.tuples(ID),
        lambda a: list(
            Post.objects.filter(author_id=a).order_by("title", "pk")[:2].values_list("pk", "title")
        ),
    ),
    "exists_approved": (
        st.tuples(ID),
        lambda p: Comment.objects.filter(post_id=p, approved=True).exists(),
    ),
    "count_by_author": (
        st.tuples(ID),
        lambda a: Comment.objects.filter(post__author_id=a).aggregate(n=Count("id"))["n"],
    ),
    "in_bulk": (
        st.tuples(ID, ID),
        lambda a, b: sorted((k, v.title) for k, v in Post.objects.in_bulk([a, b]).items()),
    ),
    "subquery": (
        st.tuples(WORD),
        lambda w: list(
            Post.objects.filter(Exists(Comment.objects.filter(post=OuterRef("pk"), body=w)))
            .order_by("pk")
            .values_list("pk", flat=True)
        ),
    ),
    "values_join": (
        st.tuples(ID),
        lambda p: list(
            Comment.objects.filter(post_id=p)
            .order_by("pk")
            .values_list("post__title", "post__author__name")
        ),
    ),
    "or_filter": (
        st.tuples(ID, ID),
        lambda a, b: list(
            Comment.objects.filter(Q(post_id=a) | Q(post_id=b))
            .order_by("pk")
            .values_list("pk", flat=True)
        ),
    ),
    "raw": (st.tuples(ID), _raw_titles),
    "cursor": (st.tuples(ID), _cursor_count),
    "prefetch": (
        st.tuples(ID),
        lambda a: [
            (p.title, [t.name for t in p.tags.all()])
            for p in Post.objects.filter(author_id=a).prefetch_related("tags").order_by("pk")
        ],
    ),
    "restaurant": (
        st.tuples(ID),
        lambda r: list(Restaurant.objects.filter(pk=r).values_list("name", "city", "rating")),
    ),
    "restaurant_obj": (
        st.tuples(ID),
        lambda r: [(x.name, x.rating) for x in Restaurant.objects.filter(pk=r)],
    ),
    "places_in": (
        st.tuples(WORD),
        lambda c: list(Place.objects.filter(city=c).order_by("pk").values_list("name", flat=True)),
    ),
    "root_groups": (
        st.tuples(),
        lambda: list(
            Group.objects.filter(parent__isnull=True).order_by("pk").values_list("code", flat=True)
        ),
    ),
    "children": (
        st.tuples(ID),
        lambda g: list(
            Group.objects.filter(parent_id=g).order_by("pk").values_list("code", flat=True)
        ),
    ),
    "members": (st.tuples(ID), _members),
    "iterator": (
        st.tuples(),
        lambda: [
            (c.body, c.post.title)
            for c in Comment.objects.filter(approved=True)
            .select_related("post")
            .order_by("pk")
            .iterator()
        ],
    ),
}

CACHED = {name: cached(name=f"stateful:{name}")(fn) for name, (_, fn) in READS.items()}
READ = st.sampled_from(sorted(READS)).flatmap(lambda n: st.tuples(st.just(n), READS[n][0]))

# Writes -----------------------------------------------------------------------------------


def _comment_save(c: int, p: int, body: str) -> None:
    comment = Comment.objects.get(pk=c)
    comment.post_id = p
    comment.body = body
    comment.save()


def _post_save(p: int, title: str, a: int) -> None:
    post = Post.objects.get(pk=p)
    post.title = title
    post.author_id = a
    post.save()


def _raw(kind: int, a: int, b: int) -> None:
    with connection.cursor() as cur:
        if kind == 0:
            cur.execute("UPDATE blog_comment SET body = %s WHERE post_id = %s", ["xa", a])
        elif kind == 1:
            cur.execute("UPDATE blog_post SET title = %s WHERE id = %s", [f"raw{b}", a])
        elif kind == 2:
            cur.execute("DELETE FROM blog_post_tags WHERE tag_id = %s", [a])
        else:
            cur.execute(
                "INSERT INTO blog_comment (post_id, author_name, body, created_at, approved) "
                "VALUES (%s, 'raw', 'xb', now(), true)",
                [a],
            )


WRITES: dict[str, tuple[Any, Callable[..., Any]]] = {
    "comment_create": (
        st.tuples(ID, WORD),
        lambda p, w: Comment.objects.create(post_id=p, author_name="h", body=w),
    ),
    "comment_save": (st.tuples(ID, ID, WORD), _comment_save),
    "comment_update_fields": (
        st.tuples(ID, st.booleans()),
        lambda c, ok: Comment(pk=c, approved=ok).save(update_fields=["approved"]),
    ),
    "comment_delete": (st.tuples(ID), lambda c: Comment.objects.get(pk=c).delete()),
    "comments_update": (
        st.tuples(ID, WORD),
        lambda p, w: Comment.objects.filter(post_id=p).update(body=w),
    ),
    "comments_move": (
        st.tuples(WORD, ID),
        lambda w, p: Comment.objects.filter(body=w).update(post_id=p),
    ),
    "comments_expr": (
        st.tuples(ID),
        lambda p: Comment.objects.filter(post__author_id=p).update(post_id=F("post_id")),
    ),
    "comments_qs_delete": (st.tuples(WORD), lambda w: Comment.objects.filter(body=w).delete()),
    "comments_bulk_create": (
        st.tuples(ID, ID),
        lambda a, b: Comment.objects.bulk_create(
            [
                Comment(post_id=a, author_name="bk", body="c"),
                Comment(post_id=b, author_name="bk", body="xa"),
            ]
        ),
    ),
    "comments_bulk_update": (
        st.tuples(ID, ID),
        lambda p, q: Comment.objects.bulk_update(
            [Comment(pk=c.pk, post_id=q, body="b") for c in Comment.objects.filter(post_id=p)],
            ["post", "body"],
        ),
    ),
    "post_create": (
        st.tuples(ID, ID),
        lambda a, s: Post.objects.create(author_id=a, title=f"new{s}", slug=f"s{s}", body="."),
    ),
    "post_save": (st.tuples(ID, WORD, ID), _post_save),
    "post_delete": (st.tuples(ID), lambda p: Post.objects.get(pk=p).delete()),
    "post_slug": (st.tuples(ID, ID), lambda p, s: Post.objects.filter(pk=p).update(slug=f"s{s}")),
    "author_delete": (st.tuples(ID), lambda a: Author.objects.filter(pk=a).delete()),
    "author_rename": (st.tuples(ID, WORD), lambda a, w: Author.objects.filter(pk=a).update(name=w)),
    "tag_add": (st.tuples(ID, ID), lambda p, t: Post.objects.get(pk=p).tags.add(t)),
    "tag_remove": (st.tuples(ID, ID), lambda p, t: Post.objects.get(pk=p).tags.remove(t)),
    "tag_reverse_add": (st.tuples(ID, ID), lambda t, p: Tag.objects.get(pk=t).posts.add(p)),
    "tag_clear": (st.tuples(ID), lambda t: Tag.objects.get(pk=t).posts.clear()),
    "tag_set": (st.tuples(ID, ID, ID), lambda p, a, b: Post.objects.get(pk=p).tags.set([a, b])),
    "tag_rename": (st.tuples(ID, WORD), lambda t, w: Tag.objects.filter(pk=t).update(name=f"t{w}")),
    "tag_get_or_create": (
        st.tuples(ID),
        lambda s: Tag.objects.get_or_create(slug=f"g{s}", defaults={"name": f"g{s}"}),
    ),
    "tag_update_or_create": (
        st.tuples(ID, WORD),
        lambda t, w: Tag.objects.update_or_create(pk=t, defaults={"name": f"u{w}{t}"}),
    ),
    "tag_upsert": (
        st.tuples(ID),
        lambda t: Tag.objects.bulk_create(
            [Tag(name=f"tag{t}", slug=f"up{t}")],
            update_conflicts=True,
            unique_fields=["name"],
            update_fields=["slug"],
        ),
    ),
    "raw": (st.tuples(st.integers(0, 3), ID, ID), _raw),
    "restaurant_create": (
        st.tuples(WORD),
        lambda c: Restaurant.objects.create(name=f"r{c}", city=c, rating=1),
    ),
    "restaurant_update": (
        st.tuples(ID, WORD),
        lambda r, c: Restaurant.objects.filter(pk=r).update(city=c, rating=F("rating") + 1),
    ),
    "place_update": (st.tuples(ID, WORD), lambda r, c: Place.objects.filter(pk=r).update(name=c)),
    "restaurant_save": (
        st.tuples(ID, WORD),
        lambda r, w: (lambda x: (setattr(x, "name", w), x.save()))(Restaurant.objects.get(pk=r)),
    ),
    "restaurant_delete": (st.tuples(ID), lambda r: Restaurant.objects.filter(pk=r).delete()),
    "group_parent": (
        st.tuples(ID, ID),
        lambda g, p: Group.objects.filter(pk=g).update(parent_id=p if p != g else None),
    ),
    "group_delete": (st.tuples(ID), lambda g: Group.objects.get(pk=g).delete()),
    "membership_add": (
        st.tuples(ID, ID),
        lambda p, g: Membership.objects.create(person_id=p, group_id=g),
    ),
    "membership_remove": (
        st.tuples(ID, ID),
        lambda p, g: Person.objects.get(pk=p).groups.remove(g),
    ),
    "person_rename": (st.tuples(ID, WORD), lambda p, w: Person.objects.filter(pk=p).update(name=w)),
}

_EXPECTED = (ObjectDoesNotExist, DatabaseError, ValueError)


class _Rollback(Exception):
    pass


def _seed() -> None:
    with connection.cursor() as cur:
        cur.execute(
            "TRUNCATE blog_comment, blog_post_tags, blog_post, blog_tag, blog_author, "
            "capture_app_membership, capture_app_person, capture_app_restaurant, "
            "capture_app_place, capture_app_group RESTART IDENTITY CASCADE"
        )
    authors = [Author.objects.create(name=f"au{i}", slug=f"au{i}") for i in range(1, 4)]
    posts = [
        Post.objects.create(author=authors[i % 3], title=f"t{i}", slug=f"s{i}", body=".")
        for i in range(1, 5)
    ]
    tags = [Tag.objects.create(name=f"tag{i}", slug=f"tag{i}") for i in range(1, 4)]
    posts[0].tags.add(tags[0], tags[1])
    posts[1].tags.add(tags[1])
    for i, body in enumerate(["a", "b", "xa", "c", "xb"]):
        Comment.objects.create(post=posts[i % 4], author_name="s", body=body)
    Restaurant.objects.create(name="r1", city="a", rating=1)
    Restaurant.objects.create(name="r2", city="b", rating=2)
    g1 = Group.objects.create(name="g1", code="g1")
    Group.objects.create(name="g2", code="g2", parent=g1)
    Group.objects.create(name="g3", code="g3")
    people = [Person.objects.create(name=f"p{i}") for i in range(1, 4)]
    people[0].groups.add(g1)


class CaptureMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        _seed()
        freshcache.store().clear()
        self.seen: dict[tuple[str, tuple[Any, ...]], None] = {}
        self.warmed: list[tuple[str, tuple[Any, ...]]] = []
        self.enabled: list[str] = sorted(WRITES)

    def _check(self, name: str, args: tuple[Any, ...]) -> None:
        served = CACHED[name](*args)
        truth = READS[name][1](*args)
        assert served == truth, f"stale {name}{args}: cached {served!r}, database {truth!r}"

    @initialize(data=st.data())
    def warm_every_read_kind(self, data: st.DataObject) -> None:
        # Every example caches one read of each kind, so every write meets every read shape.
        self.warmed = [(name, data.draw(READS[name][0], label=name)) for name in sorted(READS)]
        # Swarm testing: each example writes through a few paths only, so those few are
        # exercised often enough to meet the states that expose a missed dependency.
        self.enabled = sorted(
            data.draw(
                st.sets(st.sampled_from(sorted(WRITES)), min_size=3, max_size=8), label="paths"
            )
        )
        for name, args in self.warmed:
            self._check(name, args)

    @rule(read=READ)
    def read(self, read: tuple[str, tuple[Any, ...]]) -> None:
        name, args = read
        self._check(name, args)
        self.seen.pop(read, None)
        self.seen[read] = None
        if len(self.seen) > 8:
            del self.seen[next(iter(self.seen))]

    def _write_op(self, data: st.DataObject) -> tuple[str, tuple[Any, ...]]:
        name = data.draw(st.sampled_from(self.enabled), label="write")
        return name, data.draw(WRITES[name][0], label="args")

    @rule(data=st.data())
    def write(self, data: st.DataObject) -> None:
        name, args = self._write_op(data)
        with contextlib.suppress(_EXPECTED):
            WRITES[name][1](*args)
        self.check_all()

    @rule(data=st.data(), commit=st.booleans())
    def atomic(self, data: st.DataObject, commit: bool) -> None:
        writes = [self._write_op(data) for _ in range(data.draw(st.integers(1, 3), label="n"))]
        try:
            with transaction.atomic():
                for name, args in writes:
                    try:
                        with transaction.atomic():
                            WRITES[name][1](*args)
                    except _EXPECTED:
                        pass
                if not commit:
                    raise _Rollback
        except (_Rollback, DatabaseError):
            pass  # rolled back on purpose, or a deferred foreign key failed at COMMIT
        self.check_all()

    def check_all(self) -> None:
        # After every write: reads do not change what is cached for other reads.
        for name, args in [*self.warmed, *self.seen]:
            self._check(name, args)


@pytest.mark.timeout(1800)
def test_cached_reads_always_equal_uncached_reads(memory_store: Any) -> None:
    profile = PROFILES[os.environ.get("FRESHCACHE_HYPOTHESIS_PROFILE", "ci")]
    run_state_machine_as_test(CaptureMachine, settings=profile)


# The same machine on the shared stores, with a smaller budget (the memory run above is the
# deep one; these prove the stores add no staleness of their own under the same programs).
SHARED_STORE_PROFILE = settings(
    max_examples=12,
    stateful_step_count=20,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("kind", ["database", "redis"])
def test_cached_reads_equal_uncached_reads_on_shared_stores(
    kind: str, request: pytest.FixtureRequest, transactional_db: None
) -> None:
    from django.test import override_settings

    import freshcache
    from tests.conftest import redis_available, store_url

    if kind == "redis" and not redis_available():
        request.node.add_marker(pytest.mark.redis)
        from tests.conftest import pytest_runtest_setup

        pytest_runtest_setup(request.node)
    with override_settings(FRESHCACHE={"STORE": store_url(kind)}):
        freshcache.store().clear()
        try:
            run_state_machine_as_test(CaptureMachine, settings=SHARED_STORE_PROFILE)
        finally:
            freshcache.store().clear()
