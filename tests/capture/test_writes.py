"""Every write path invalidates what it changed (observed on ``@cached`` values), and no more
than its rows' old and new predicate tags where the rows are known."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models import F
from django.test import override_settings

from blog.models import Author, Comment, Post, Tag
from tests.capture.conftest import Watch
from tests.capture_app.models import Group, Membership, Note, Person, PizzaPlace, Place, Restaurant

pytestmark = [pytest.mark.postgres]


@pytest.fixture
def blog(memory_store: Any) -> dict[str, Any]:
    a = Author.objects.create(name="Ann", slug="ann")
    b = Author.objects.create(name="Bob", slug="bob")
    p7 = Post.objects.create(author=a, title="Seven", slug="seven", body="b")
    p8 = Post.objects.create(author=b, title="Eight", slug="eight", body="b")
    c7 = Comment.objects.create(post=p7, author_name="x", body="on seven")
    c8 = Comment.objects.create(post=p8, author_name="y", body="on eight")
    dj = Tag.objects.create(name="django", slug="django")
    py = Tag.objects.create(name="python", slug="python")
    return {"a": a, "b": b, "p7": p7, "p8": p8, "c7": c7, "c8": c8, "dj": dj, "py": py}


def comment_watch(p7: Post, p8: Post) -> Watch:
    return Watch(
        c7=lambda: list(Comment.objects.filter(post_id=p7.pk).values_list("body", flat=True)),
        c8=lambda: list(Comment.objects.filter(post_id=p8.pk).values_list("body", flat=True)),
        n7=lambda: Comment.objects.filter(post_id=p7.pk).count(),
        all=lambda: sorted(Comment.objects.values_list("body", flat=True)),
    )


def test_save_insert_update_and_move(blog: dict[str, Any]) -> None:
    p7, p8 = blog["p7"], blog["p8"]
    w = comment_watch(p7, p8)
    w.warm()
    c = Comment.objects.create(post=p7, author_name="z", body="new")
    assert w.invalidated() == {"c7", "n7", "all"}
    c.body = "edited"
    c.save()
    assert w.invalidated() == {"c7", "n7", "all"}
    c.post = p8
    c.save(update_fields=["post"])
    assert w.invalidated() == {"c7", "c8", "n7", "all"}


def test_save_update_of_one_row_spares_other_predicates(blog: dict[str, Any]) -> None:
    p7, p8 = blog["p7"], blog["p8"]
    w = comment_watch(p7, p8)
    w.warm()
    c7 = blog["c7"]
    c7.body = "edited"
    c7.save()
    assert w.invalidated() == {"c7", "n7", "all"}


def test_delete_instance_and_cascade(blog: dict[str, Any]) -> None:
    p7, p8 = blog["p7"], blog["p8"]
    w = comment_watch(p7, p8)
    w.warm()
    blog["c7"].delete()
    assert w.invalidated() == {"c7", "n7", "all"}
    Comment.objects.create(post=p7, author_name="z", body="again")
    w.warm()
    p7.delete()  # cascades to its comments
    assert w.invalidated() == {"c7", "n7", "all"}


def test_queryset_update_and_delete(blog: dict[str, Any]) -> None:
    p7, p8 = blog["p7"], blog["p8"]
    w = comment_watch(p7, p8)
    w.warm()
    Comment.objects.filter(author_name="y").update(body="upd")
    assert w.invalidated() == {"c8", "all"}
    Comment.objects.filter(author_name="x").update(post=p8)
    assert w.invalidated() == {"c7", "c8", "n7", "all"}
    Comment.objects.filter(body="upd").update(post_id=F("post_id"))  # an expression
    assert w.invalidated() == {"c8", "all"}
    Comment.objects.filter(author_name="y").delete()
    assert w.invalidated() == {"c8", "all"}


def test_update_of_many_rows_falls_back_to_wildcards(
    blog: dict[str, Any], monkeypatch: Any
) -> None:
    from freshcache.capture import writes

    monkeypatch.setattr(writes, "MAX_ROWS", 1)
    p7, p8 = blog["p7"], blog["p8"]
    w = comment_watch(p7, p8)
    w.warm()
    Comment.objects.update(body="all")
    assert w.invalidated() == {"c7", "c8", "all"} | {"n7"}


def test_bulk_create_bulk_update_and_conflicts(blog: dict[str, Any]) -> None:
    p7, p8 = blog["p7"], blog["p8"]
    w = comment_watch(p7, p8)
    w.warm()
    made = Comment.objects.bulk_create(
        [
            Comment(post=p8, author_name="b", body="bulk1"),
            Comment(post=p8, author_name="b", body="b2"),
        ]
    )
    assert w.invalidated() == {"c8", "all"}
    for c in made:
        c.body = c.body + "!"
    Comment.objects.bulk_update(made, ["body"])
    assert w.invalidated() == {"c8", "all"}
    made[0].post = p7
    Comment.objects.bulk_update(made, ["post"])
    assert w.invalidated() == {"c7", "c8", "n7", "all"}

    tags = Watch(
        dj=lambda: list(Tag.objects.filter(slug="django").values_list("name", flat=True)),
        py=lambda: list(Tag.objects.filter(slug="python").values_list("name", flat=True)),
    )
    tags.warm()
    Tag.objects.bulk_create([Tag(name="django", slug="django2")], ignore_conflicts=True)
    assert tags.invalidated() == set()
    Tag.objects.bulk_create(
        [Tag(name="django", slug="dj-renamed")],
        update_conflicts=True,
        unique_fields=["name"],
        update_fields=["slug"],
    )
    assert tags.invalidated() == {"dj", "py"}  # rows unknown: every slug reader


def test_get_or_create_and_update_or_create(blog: dict[str, Any]) -> None:
    w = Watch(tag=lambda: list(Tag.objects.filter(slug="rust").values_list("name", flat=True)))
    w.warm()
    Tag.objects.get_or_create(slug="rust", defaults={"name": "Rust"})
    assert w.invalidated() == {"tag"}
    Tag.objects.get_or_create(slug="rust", defaults={"name": "Rust"})
    assert w.invalidated() == set()
    Tag.objects.update_or_create(slug="rust", defaults={"name": "Rust!"})
    assert w.invalidated() == {"tag"}


def test_m2m_from_both_sides(blog: dict[str, Any]) -> None:
    p7, p8, dj, py = blog["p7"], blog["p8"], blog["dj"], blog["py"]
    w = Watch(
        dj_posts=lambda: [p.title for p in dj.posts.all()],
        py_posts=lambda: [p.title for p in py.posts.all()],
        p7_tags=lambda: [t.name for t in p7.tags.all()],
        p8_tags=lambda: [t.name for t in p8.tags.all()],
    )
    w.warm()
    p7.tags.add(dj)
    assert w.invalidated() == {"dj_posts", "p7_tags"}
    py.posts.add(p8)
    assert w.invalidated() == {"py_posts", "p8_tags"}
    p7.tags.set([py])
    assert w.invalidated() == {"dj_posts", "py_posts", "p7_tags"}
    py.posts.remove(p7)
    assert w.invalidated() == {"py_posts", "p7_tags"}
    py.posts.clear()
    assert w.invalidated() == {"py_posts", "p8_tags"}


def test_custom_through_model(memory_store: Any) -> None:
    g1, g2 = Group.objects.create(name="g1", code="g1"), Group.objects.create(name="g2", code="g2")
    ann = Person.objects.create(name="ann")
    w = Watch(
        g1=lambda: [p.name for p in g1.members.all()],
        g2=lambda: [p.name for p in g2.members.all()],
        ann=lambda: [g.name for g in ann.groups.all()],
    )
    w.warm()
    Membership.objects.create(person=ann, group=g1)
    assert w.invalidated() == {"g1", "ann"}
    ann.groups.add(g2, through_defaults={"role": "admin"})
    assert w.invalidated() == {"g2", "ann"}
    Membership.objects.filter(group=g1).update(role="owner")
    assert w.invalidated() == {"g1", "ann"}  # readers of the through rows
    ann.name = "Ann"
    ann.save()
    assert w.invalidated() == {"g1", "g2"}


def test_set_null_on_delete(memory_store: Any) -> None:
    parent = Group.objects.create(name="p", code="p")
    child = Group.objects.create(name="c", code="c", parent=parent)
    w = Watch(
        orphans=lambda: sorted(Group.objects.filter(parent=None).values_list("code", flat=True)),
        kids=lambda: list(Group.objects.filter(parent_id=parent.pk).values_list("code", flat=True)),
        child=lambda: list(Group.objects.filter(pk=child.pk).values_list("parent_id", flat=True)),
    )
    w.warm()
    parent.delete()
    assert w.invalidated() == {"orphans", "kids", "child"}


def test_to_field_foreign_key_set_null(memory_store: Any) -> None:
    g = Group.objects.create(name="g", code="g")
    p = Person.objects.create(name="p", group_by_code=g)
    w = Watch(
        by_code=lambda: list(
            Person.objects.filter(group_by_code="g").values_list("name", flat=True)
        ),
        person=lambda: list(Person.objects.filter(pk=p.pk).values_list("group_by_code", flat=True)),
    )
    w.warm()
    g.delete()
    assert w.invalidated() == {"by_code", "person"}


def test_multi_table_inheritance_and_proxy(memory_store: Any) -> None:
    r = Restaurant.objects.create(name="Luigi", city="Rome", rating=3)
    other = Restaurant.objects.create(name="Other", city="Oslo")
    w = Watch(
        r=lambda: Restaurant.objects.values_list("name", "rating").get(pk=r.pk),
        proxy=lambda: PizzaPlace.objects.values_list("name", "rating").get(pk=r.pk),
        place=lambda: Place.objects.values_list("name").get(pk=r.pk),
        other=lambda: Restaurant.objects.values_list("name").get(pk=other.pk),
        instance=lambda: Restaurant.objects.get(pk=r.pk).name,
    )
    w.warm()
    Place.objects.filter(pk=r.pk).update(name="Luigi's")  # the parent table only
    assert w.invalidated() == {"r", "proxy", "place", "instance"}
    Restaurant.objects.filter(pk=r.pk).update(name="L", rating=4)  # both tables
    assert w.invalidated() == {"r", "proxy", "place", "instance"}
    PizzaPlace.objects.filter(pk=r.pk).update(rating=5)
    assert w.invalidated() == {"r", "proxy", "instance"}
    r.refresh_from_db()
    r.name = "Luigi"
    r.save()
    assert w.invalidated() == {"r", "proxy", "place", "instance"}
    r.delete()
    with pytest.raises(Restaurant.DoesNotExist):
        w.invalidated()


def test_generic_relations(memory_store: Any) -> None:
    g1, g2 = Group.objects.create(name="g1", code="g1"), Group.objects.create(name="g2", code="g2")
    w = Watch(
        g1=lambda: [n.text for n in g1.notes.all()],
        g2=lambda: [n.text for n in g2.notes.all()],
    )
    w.warm()
    Note.objects.create(target=g1, text="hello")
    assert w.invalidated() == {"g1"}
    g1.delete()  # deletes its notes through the generic relation
    assert w.invalidated() == {"g1"}


def test_raw_sql_writes(blog: dict[str, Any]) -> None:
    p7, p8 = blog["p7"], blog["p8"]
    w = comment_watch(p7, p8)
    w.warm()
    with connection.cursor() as cur:
        cur.execute("UPDATE blog_comment SET body = %s WHERE id = %s", ["raw", blog["c7"].pk])
    assert w.invalidated() == {"c7", "c8", "n7", "all"}
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM blog_post")
    assert w.invalidated() == set()
    with connection.cursor() as cur:
        cur.execute(
            "WITH gone AS (DELETE FROM blog_comment WHERE body = 'raw' RETURNING id) "
            "SELECT count(*) FROM gone"
        )
    assert w.invalidated() == {"c7", "c8", "n7", "all"}
    with connection.cursor() as cur:
        cur.execute(
            'INSERT INTO "blog_comment" (post_id, author_name, body, created_at, approved)'
            " VALUES (%s, 'r', 'raw insert', now(), true)",
            [p8.pk],
        )
    assert w.invalidated() == {"c7", "c8", "n7", "all"}


def test_transactions_defer_and_rollback_drops(blog: dict[str, Any]) -> None:
    p7, p8 = blog["p7"], blog["p8"]
    w = comment_watch(p7, p8)
    w.warm()
    with transaction.atomic():
        Comment.objects.create(post=p7, author_name="t", body="in tx")
        with pytest.raises(RuntimeError), transaction.atomic():
            Comment.objects.filter(post=p8).update(body="rolled back")
            raise RuntimeError("roll back")
    assert w.invalidated() == {"c7", "n7", "all"}
    with pytest.raises(RuntimeError), transaction.atomic():
        Comment.objects.create(post=p7, author_name="t", body="never")
        raise RuntimeError("roll back")
    assert w.invalidated() == set()


@pytest.fixture
def reinstall_triggers() -> Iterator[Callable[[], None]]:
    """Install the log triggers for the settings in force (VOLATILE_FIELDS is baked into them,
    as ``migrate`` does), and put back the suite's own triggers afterwards."""
    from django.db import connection

    from freshcache.log import triggers

    def install() -> None:
        if connection.vendor == "postgresql":
            triggers.install()

    yield install
    install()


def test_volatile_fields_invalidate_nothing(
    blog: dict[str, Any], reinstall_triggers: Callable[[], None]
) -> None:
    p7 = blog["p7"]
    with override_settings(
        FRESHCACHE={"STORE": "memory://", "VOLATILE_FIELDS": ["blog.Post.view_count"]}
    ):
        reinstall_triggers()
        from freshcache import cached

        @cached(name="post-page")
        def page(pk: int) -> tuple[str, int]:
            # A view that counts its own views while rendering.
            Post.objects.filter(pk=pk).update(view_count=F("view_count") + 1)
            post = Post.objects.get(pk=pk)
            return post.title, post.view_count

        first = page.outcome(p7.pk)  # type: ignore[attr-defined]
        assert first.stored, first.reason
        assert page.outcome(p7.pk).hit  # type: ignore[attr-defined]
        p7.refresh_from_db()
        p7.view_count = 100
        p7.save(update_fields=["view_count"])
        assert page.outcome(p7.pk).hit  # type: ignore[attr-defined]
        Post.objects.filter(pk=p7.pk).update(title="New", view_count=0)
        assert page.outcome(p7.pk).value == ("New", 1)  # type: ignore[attr-defined]


def test_writes_inside_a_cached_computation_make_it_uncacheable(blog: dict[str, Any]) -> None:
    from freshcache import cached

    @cached(name="writer")
    def writer() -> int:
        Comment.objects.filter(post=blog["p7"]).update(body="touched")
        return 1

    assert not writer.outcome().stored  # type: ignore[attr-defined]


def test_excluded_models_bump_nothing(blog: dict[str, Any]) -> None:
    with override_settings(FRESHCACHE={"STORE": "memory://", "EXCLUDE": ["blog.Comment"]}):
        from freshcache import counters

        before = counters.snapshot().get("bumps", 0)
        Comment.objects.create(post=blog["p7"], author_name="q", body="excluded")
        Comment.objects.all().update(body="x")
        assert counters.snapshot().get("bumps", 0) == before
