"""The four precision promises of issue 3, on the example blog.

Each cached piece is written the way a blog view would read its data, with no tag named by hand;
the blog's own hand-written invalidation receivers are disconnected (see conftest.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db.models import Count

from blog.models import Author, Comment, Post, Tag
from tests.capture.conftest import Watch

pytestmark = [pytest.mark.postgres]


def post_page(slug: str) -> dict[str, Any]:
    post = Post.objects.select_related("author").get(slug=slug)
    return {
        "title": post.title,
        "author": post.author.name,
        "tags": [t.name for t in post.tags.all()],
        "comments": [(c.author_name, c.body) for c in post.comments.filter(approved=True)],
    }


def post_comments(slug: str) -> list[str]:
    post = Post.objects.get(slug=slug)
    return [c.body for c in post.comments.all()]


def front_page() -> list[tuple[str, int]]:
    posts = Post.objects.annotate(n=Count("comments")).order_by("-published_at", "pk")[:10]
    return [(p.title, p.n) for p in posts]


def tag_page(slug: str) -> list[str]:
    tag = Tag.objects.get(slug=slug)
    return [p.title for p in tag.posts.all()]


@pytest.fixture
def site(memory_store: Any) -> Watch:
    ann = Author.objects.create(name="Ann", slug="ann")
    p7 = Post.objects.create(author=ann, title="Seven", slug="seven", body="...")
    p8 = Post.objects.create(author=ann, title="Eight", slug="eight", body="...")
    django = Tag.objects.create(name="django", slug="django")
    python = Tag.objects.create(name="python", slug="python")
    web = Tag.objects.create(name="web", slug="web")
    p7.tags.add(python)
    p8.tags.add(django, web)
    Comment.objects.create(post=p7, author_name="a", body="first on 7")
    Comment.objects.create(post=p8, author_name="b", body="first on 8")
    watch = Watch(
        post7=lambda: post_page("seven"),
        post8=lambda: post_page("eight"),
        comments7=lambda: post_comments("seven"),
        comments8=lambda: post_comments("eight"),
        front=front_page,
        tag_django=lambda: tag_page("django"),
        tag_python=lambda: tag_page("python"),
        tag_web=lambda: tag_page("web"),
    )
    watch.warm()
    return watch


def test_new_comment_on_post_7(site: Watch) -> None:
    Comment.objects.create(post=Post.objects.get(slug="seven"), author_name="c", body="second")
    assert site.invalidated() == {"post7", "comments7", "front"}


def test_editing_post_7s_title(site: Watch) -> None:
    post = Post.objects.get(slug="seven")
    post.title = "Seven, revised"
    post.save()
    # Post 7 is listed on the python tag page only. comments7 loaded post 7's row (to find its
    # comments), so it depends on that row; post 8's pieces and the other tag pages stay.
    assert site.invalidated() == {"post7", "comments7", "front", "tag_python"}


def test_moving_a_comment_from_post_7_to_post_8(site: Watch) -> None:
    comment = Comment.objects.get(body="first on 7")
    comment.post = Post.objects.get(slug="eight")
    comment.save()
    assert site.invalidated() == {"post7", "post8", "comments7", "comments8", "front"}


def test_adding_tag_django_to_post_7(site: Watch) -> None:
    Post.objects.get(slug="seven").tags.add(Tag.objects.get(slug="django"))
    assert site.invalidated() == {"post7", "tag_django"}
