"""The tags each read shape adds to the open scope: precise where provable, else the table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.db.models import Count, Exists, F, OuterRef, Q, Subquery, Window
from django.db.models.functions import RowNumber
from django.test import override_settings

from blog.models import Author, Comment, Post, Tag
from freshcache import cached
from freshcache.scope import open_scope
from tests.capture_app.models import Group, Membership, Note, Person, PizzaPlace, Restaurant, Token

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def tags_of(fn: Callable[[], Any]) -> set[str]:
    with open_scope("test") as scope:
        fn()
    return scope.tags


@pytest.fixture
def blog() -> dict[str, Any]:
    a = Author.objects.create(name="Ann", slug="ann")
    p7 = Post.objects.create(author=a, title="Seven", slug="seven", body="b")
    p8 = Post.objects.create(author=a, title="Eight", slug="eight", body="b")
    dj = Tag.objects.create(name="django", slug="django")
    py = Tag.objects.create(name="python", slug="python")
    p7.tags.add(dj, py)
    c = Comment.objects.create(post=p7, author_name="x", body="hi")
    return {"a": a, "p7": p7, "p8": p8, "dj": dj, "py": py, "c": c}


# Precise shapes ---------------------------------------------------------------------------


def test_filter_on_foreign_key_is_a_predicate(blog: dict[str, Any]) -> None:
    p7 = blog["p7"]
    assert tags_of(lambda: list(Comment.objects.filter(post=p7))) == {
        f"blog.comment?post_id={p7.pk}",
        "blog.comment?post_id=*",
    }


def test_related_manager_count_exists_values_aggregate(blog: dict[str, Any]) -> None:
    p7 = blog["p7"]
    expected = {f"blog.comment?post_id={p7.pk}", "blog.comment?post_id=*"}
    assert tags_of(lambda: p7.comments.count()) == expected
    assert tags_of(lambda: p7.comments.exists()) == expected
    assert tags_of(lambda: list(p7.comments.values_list("body", flat=True))) == expected
    assert tags_of(lambda: p7.comments.aggregate(n=Count("id"))) == expected
    assert tags_of(lambda: p7.comments.order_by("-created_at")[:2].count()) == expected
    assert tags_of(lambda: list(p7.comments.filter(body__icontains="h")[1:3])) == expected


def test_get_by_pk_and_by_unique_field(blog: dict[str, Any]) -> None:
    p7 = blog["p7"]
    assert tags_of(lambda: Post.objects.get(pk=p7.pk)) == {f"blog.post:{p7.pk}", "blog.post:*"}
    assert tags_of(lambda: Post.objects.get(slug="seven")) == {
        "blog.post?slug=seven",
        "blog.post?slug=*",
    }
    # The primary key wins over other keyed columns in the same conjunction.
    assert tags_of(lambda: Post.objects.filter(pk=p7.pk, author=blog["a"]).first()) == {
        f"blog.post:{p7.pk}",
        "blog.post:*",
    }


def test_in_bulk_and_in_lookup_give_one_tag_per_value(blog: dict[str, Any]) -> None:
    p7, p8 = blog["p7"], blog["p8"]
    assert tags_of(lambda: Post.objects.in_bulk([p7.pk, p8.pk])) == {
        f"blog.post:{p7.pk}",
        f"blog.post:{p8.pk}",
        "blog.post:*",
    }


def test_isnull_gives_the_null_tag() -> None:
    tags = tags_of(lambda: list(Group.objects.filter(parent__isnull=True)))
    assert tags == {"capture_app.group?parent_id=\x00null", "capture_app.group?parent_id=*"} or (
        len(tags) == 2 and "capture_app.group?parent_id=*" in tags
    )


def test_empty_in_reads_nothing() -> None:
    assert tags_of(lambda: list(Post.objects.filter(pk__in=[]))) == set()
    assert tags_of(lambda: list(Post.objects.none())) == set()


def test_select_related_is_covered_by_the_instance_tags_of_rows_loaded(
    blog: dict[str, Any],
) -> None:
    p7, a = blog["p7"], blog["a"]
    assert tags_of(
        lambda: list(Comment.objects.filter(post=p7).select_related("post__author"))
    ) == {
        f"blog.comment?post_id={p7.pk}",
        "blog.comment?post_id=*",
        f"blog.post:{p7.pk}",
        "blog.post:*",
        f"blog.author:{a.pk}",
        "blog.author:*",
    }


def test_m2m_both_directions_are_predicates_on_the_through_table(blog: dict[str, Any]) -> None:
    p7, dj, py = blog["p7"], blog["dj"], blog["py"]
    assert tags_of(lambda: list(dj.posts.all())) == {
        f"blog.post_tags?tag_id={dj.pk}",
        "blog.post_tags?tag_id=*",
        f"blog.post:{p7.pk}",
        "blog.post:*",
    }
    assert tags_of(lambda: list(p7.tags.all())) == {
        f"blog.post_tags?post_id={p7.pk}",
        "blog.post_tags?post_id=*",
        f"blog.tag:{dj.pk}",
        f"blog.tag:{py.pk}",
        "blog.tag:*",
    }


def test_prefetch_related_queries_are_predicates(blog: dict[str, Any]) -> None:
    p7, p8 = blog["p7"], blog["p8"]
    tags = tags_of(
        lambda: list(Post.objects.filter(pk__in=[p7.pk, p8.pk]).prefetch_related("tags"))
    )
    assert f"blog.post_tags?post_id={p7.pk}" in tags
    assert f"blog.post_tags?post_id={p8.pk}" in tags
    assert "blog.post_tags" not in tags and "blog.tag" not in tags and "blog.post" not in tags


def test_multi_table_inheritance_and_proxy_share_tags() -> None:
    r = Restaurant.objects.create(name="Luigi's", serves_pizza=True)
    expected = {
        f"capture_app.restaurant:{r.pk}",
        "capture_app.restaurant:*",
        f"capture_app.place:{r.pk}",
        "capture_app.place:*",
    }
    assert tags_of(lambda: Restaurant.objects.get(pk=r.pk)) == expected
    assert tags_of(lambda: PizzaPlace.objects.get(pk=r.pk)) == expected


def test_generic_relation_is_a_predicate_on_the_object_id() -> None:
    g = Group.objects.create(name="g", code="g")
    Note.objects.create(target=g, text="n")
    tags = tags_of(lambda: list(g.notes.all()))
    assert tags == {f"capture_app.note?object_id={g.pk}", "capture_app.note?object_id=*"}


def test_uuid_keys_are_normalised_on_both_sides() -> None:
    t = Token.objects.create(label="x")
    assert tags_of(lambda: Token.objects.get(pk=str(t.pk).upper())) == {
        f"capture_app.token:{t.pk}",
        "capture_app.token:*",
    }


def test_declared_predicate_field() -> None:
    with override_settings(FRESHCACHE={"PREDICATE_FIELDS": ["capture_app.Place.city"]}):
        assert tags_of(lambda: list(Restaurant.objects.filter(city="Rome"))) >= {
            "capture_app.place?city=Rome"
        }
        assert "capture_app.place" not in tags_of(
            lambda: list(Restaurant.objects.filter(city="Rome"))
        )


# Table fallbacks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "read",
    [
        lambda: list(Post.objects.all()),
        lambda: list(Post.objects.filter(title="Seven")),  # not a keyed column
        lambda: list(Post.objects.filter(Q(slug="seven") | Q(slug="eight"))),
        lambda: list(Post.objects.exclude(slug="seven")),
        lambda: list(Post.objects.filter(id__gt=0)),
        lambda: list(Post.objects.filter(slug__startswith="se")),
        lambda: list(Post.objects.filter(slug__iexact="SEVEN")),
        lambda: list(Post.objects.order_by("-published_at")[:10]),
        lambda: list(Post.objects.filter(author__isnull=False)),
        lambda: list(Post.objects.filter(id=F("author_id"))),
        lambda: list(Post.objects.order_by("title").distinct("title")),
        lambda: list(Post.objects.annotate(rn=Window(RowNumber())).filter(slug="seven")),
        lambda: list(Post.objects.filter(slug="seven").union(Post.objects.filter(slug="eight"))),
        lambda: list(Post.objects.extra(where=["slug = 'seven'"])),
        lambda: list(Post.objects.raw("SELECT * FROM blog_post WHERE slug = %s", ["seven"])),
    ],
)
def test_shapes_that_fall_back_to_the_table(blog: dict[str, Any], read: Callable[[], Any]) -> None:
    assert "blog.post" in tags_of(read)


def test_joined_filter_and_reverse_join_fall_back(blog: dict[str, Any]) -> None:
    tags = tags_of(lambda: list(Comment.objects.filter(post__title="Seven")))
    assert {"blog.comment", "blog.post"} <= tags
    tags = tags_of(lambda: list(Post.objects.annotate(n=Count("comments"))))
    assert {"blog.comment", "blog.post"} <= tags


def test_subquery_tables_get_their_table_tag(blog: dict[str, Any]) -> None:
    p7 = blog["p7"]
    newest = Comment.objects.filter(post=OuterRef("pk")).order_by("-created_at")
    tags = tags_of(
        lambda: list(Post.objects.filter(pk=p7.pk).annotate(c=Subquery(newest.values("body")[:1])))
    )
    assert f"blog.post:{p7.pk}" in tags and "blog.comment" in tags
    # The same table in the outer query and in a subquery: the table tag.
    tags = tags_of(
        lambda: list(Post.objects.filter(pk=p7.pk, id__in=Post.objects.filter(title="Seven")))
    )
    assert "blog.post" in tags
    tags = tags_of(
        lambda: list(Post.objects.filter(Exists(Comment.objects.filter(post=OuterRef("pk")))))
    )
    assert {"blog.post", "blog.comment"} <= tags


def test_sliced_order_by_a_joined_column_is_not_covered(blog: dict[str, Any]) -> None:
    def qs() -> Any:
        return Comment.objects.filter(body="hi").select_related("post").order_by("post__title")

    assert "blog.post" not in tags_of(lambda: list(qs()))
    assert "blog.post" in tags_of(lambda: list(qs()[:1]))


def test_select_related_with_a_filter_on_the_joined_table_is_not_covered(
    blog: dict[str, Any],
) -> None:
    qs = Comment.objects.select_related("post").filter(post__title="Seven")
    assert "blog.post" in tags_of(lambda: list(qs))


def test_iterator_joins_fall_back(blog: dict[str, Any]) -> None:
    qs = Comment.objects.filter(body="hi").select_related("post")
    assert "blog.post" not in tags_of(lambda: list(qs))
    assert "blog.post" in tags_of(lambda: list(qs.iterator(chunk_size=10)))


def test_constraints_carry_across_join_equalities(blog: dict[str, Any]) -> None:
    p7 = blog["p7"]
    # comment.post_id = 7 and comment.post_id = post.id: the post read is post 7, whatever
    # is done with its columns.
    tags = tags_of(
        lambda: list(
            Comment.objects.filter(post=p7).order_by("post__title").values("post__title")[:1]
        )
    )
    assert tags == {
        f"blog.comment?post_id={p7.pk}",
        "blog.comment?post_id=*",
        f"blog.post:{p7.pk}",
        "blog.post:*",
    }


def test_raw_cursor_read(blog: dict[str, Any]) -> None:
    def read() -> None:
        with connection.cursor() as cur:
            cur.execute("SELECT c.body FROM blog_comment c, blog_post p WHERE p.id = c.post_id")

    assert tags_of(read) == {"blog.comment", "blog.post"}

    def unknown() -> None:
        with connection.cursor() as cur:
            cur.execute("SELECT * FROM pg_class LIMIT 1")

    assert tags_of(unknown) == {"db_table:pg_class"}


# Scope rules ------------------------------------------------------------------------------


def test_excluded_tables_add_nothing() -> None:
    from django.contrib.sessions.models import Session

    assert tags_of(lambda: list(Session.objects.all())) == set()
    with override_settings(FRESHCACHE={"EXCLUDE": ["capture_app.Person"]}):
        assert tags_of(lambda: list(Person.objects.all())) == set()
        assert tags_of(lambda: list(Membership.objects.all())) == {"capture_app.membership"}


def test_select_for_update_makes_the_scope_uncacheable(blog: dict[str, Any]) -> None:
    with open_scope() as scope:
        list(Post.objects.select_for_update().filter(pk=blog["p7"].pk))
    assert scope.uncacheable is not None


def test_no_scope_no_work(blog: dict[str, Any], django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(1):
        list(Comment.objects.filter(post=blog["p7"]).select_related("post"))


@pytest.mark.django_db(transaction=True)
async def test_async_orm_reads_reach_the_scope_of_an_async_computation(memory_store: Any) -> None:
    a = await Author.objects.acreate(name="Ann", slug="ann")
    p7 = await Post.objects.acreate(author=a, title="Seven", slug="seven", body="b")

    @cached(name="async-comments")
    async def comments(pk: int) -> int:
        return await Comment.objects.filter(post_id=pk).acount()

    outcome = await comments.outcome(p7.pk)  # type: ignore[attr-defined]
    assert f"blog.comment?post_id={p7.pk}" in outcome.tags

    with open_scope() as scope:
        await sync_to_async(lambda: list(Post.objects.filter(pk=p7.pk)))()
    assert f"blog.post:{p7.pk}" in scope.tags
    await sync_to_async(lambda: connection.close())()
