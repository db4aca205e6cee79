"""Reads through a LEFT OUTER JOIN, then a write to the joined table (issue 9, item 9).

``Post.objects.filter(comments__isnull=True)`` lists the posts with no comment: a condition on
the outer-joined comment table, true exactly for the rows that are missing. A comment created on
a listed post must make the next read miss. Generated: every outer-join read shape below times
every write that adds, removes or moves a row of the joined table; after each write every read
must return what the database holds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.db.models import Count, Q

from blog.models import Author, Comment, Post, Tag
from tests.capture.conftest import Watch

pytestmark = [pytest.mark.postgres]

World = dict[str, Any]


def _titles(qs: Any) -> list[str]:
    return sorted(qs.values_list("title", flat=True))


READS: dict[str, Callable[[World], Any]] = {
    "posts without comments": lambda w: _titles(Post.objects.filter(comments__isnull=True)),
    "post 7 without comments": lambda w: Post.objects.filter(
        pk=w["p7"].pk, comments__isnull=True
    ).exists(),
    "ann's posts without comments": lambda w: _titles(
        Post.objects.filter(author=w["ann"], comments__isnull=True)
    ),
    "posts without comments or with x's": lambda w: _titles(
        Post.objects.filter(Q(comments__isnull=True) | Q(comments__author_name="x")).distinct()
    ),
    "posts without tags": lambda w: _titles(Post.objects.filter(tags__isnull=True)),
    "authors without posts": lambda w: sorted(
        Author.objects.filter(posts__isnull=True).values_list("name", flat=True)
    ),
    "comment bodies of post 7": lambda w: sorted(
        Post.objects.filter(pk=w["p7"].pk).values_list("comments__body", flat=True),
        key=repr,
    ),
    "every post with its comments' bodies": lambda w: sorted(
        Post.objects.values_list("pk", "title", "comments__body"), key=repr
    ),
    "posts with no comment, counted": lambda w: _titles(
        Post.objects.annotate(n=Count("comments")).filter(n=0)
    ),
}


def _raw_insert(w: World) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO blog_comment (post_id, author_name, body, created_at, approved) "
            "VALUES (%s, 'r', 'raw', now(), true)",
            [w["p7"].pk],
        )


WRITES: dict[str, Callable[[World], Any]] = {
    "comment created on a listed post": lambda w: Comment.objects.create(
        post=w["p7"], author_name="z", body="new"
    ),
    "comments bulk-created": lambda w: Comment.objects.bulk_create(
        [Comment(post=w["p7"], author_name="z", body="b1"), Comment(post=w["p9"], body="b2")]
    ),
    "the only comment deleted": lambda w: w["c8"].delete(),
    "comments deleted by queryset": lambda w: Comment.objects.filter(post=w["p8"]).delete(),
    "a comment moved to a listed post": lambda w: Comment.objects.filter(pk=w["c8"].pk).update(
        post=w["p7"]
    ),
    "a comment moved by save": lambda w: _move_by_save(w),
    "a comment inserted by raw SQL": _raw_insert,
    "a tag added to a listed post": lambda w: w["p7"].tags.add(w["dj"]),
    "a post created for an author without posts": lambda w: Post.objects.create(
        author=w["bob"], title="Bob's", slug="bobs", body="b"
    ),
}


def _bound(read: Callable[[World], Any], w: World) -> Callable[[], Any]:
    return lambda: read(w)


def _move_by_save(w: World) -> None:
    c = Comment.objects.get(pk=w["c8"].pk)
    c.post = w["p7"]
    c.save()


@pytest.mark.parametrize("write", list(WRITES))
def test_reads_through_an_outer_join_miss_after_a_write_to_the_joined_table(
    memory_store: Any, write: str
) -> None:
    ann = Author.objects.create(name="Ann", slug="ann")
    bob = Author.objects.create(name="Bob", slug="bob")
    w: World = {"ann": ann, "bob": bob, "dj": Tag.objects.create(name="django", slug="django")}
    for n in (7, 8, 9):
        w[f"p{n}"] = Post.objects.create(author=ann, title=f"P{n}", slug=f"p{n}", body="b")
    w["c8"] = Comment.objects.create(post=w["p8"], author_name="x", body="on eight")
    w["p9"].tags.add(w["dj"])
    watch = Watch(**{name: _bound(read, w) for name, read in READS.items()})
    watch.warm()
    before = {name: read(w) for name, read in READS.items()}
    WRITES[write](w)
    changed = {name for name, read in READS.items() if read(w) != before[name]}
    assert changed, "the write changes no read: it tests nothing"
    missed = watch.invalidated()  # every value served equals the database's
    assert changed <= missed
