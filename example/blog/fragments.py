"""The expensive parts of the blog's pages, rendered to HTML and cached by freshcache.

Each function declares what its HTML was built from with ``depends_on()``; ``signals.py``
invalidates the same tags when that data changes, so a fragment is served from the cache
until the moment it would be stale, and not a moment longer. When freshcache captures ORM
reads and writes by itself, the ``depends_on()`` calls and most of ``signals.py`` go away.

The fragments never contain anything per-visitor (CSRF tokens, forms, view counts): those are
rendered by the views around them, on every request.
"""

from django.core.paginator import EmptyPage, Paginator
from django.db.models import Count, Q, QuerySet
from django.http import Http404
from django.template.loader import render_to_string

from blog.models import Author, Comment, Post, Tag
from freshcache import cached, depends_on

POSTS_PER_PAGE = 10


def post_comments_tag(post_id: int) -> str:
    """The free-form tag of one post's comment list: a new comment on post 7 must not
    invalidate post 8's comments."""
    return f"blog.post-comments:{post_id}"


def post_tags_tag(post_id: int) -> str:
    """The free-form tag of one post's set of tags (the Post.tags many-to-many rows)."""
    return f"blog.post-tags:{post_id}"


@cached
def render_post(post: Post) -> str:
    """The article itself: title, author, date, tags and body."""
    tags = list(post.tags.all())
    depends_on(post, post.author, post_tags_tag(post.pk), *tags)
    return render_to_string("blog/_post_article.html", {"post": post, "tags": tags})


@cached
def render_comments(post: Post) -> str:
    """A post's approved comments. Depends on the post too: the permalinks carry its slug."""
    depends_on(post, post_comments_tag(post.pk))
    comments = list(post.comments.filter(approved=True).order_by("created_at", "pk"))
    return render_to_string("blog/_comments.html", {"post": post, "comments": comments})


@cached
def render_front_page(page_number: int) -> str:
    """One page of the latest posts."""
    return _render_post_list(_post_list_queryset(), page_number)


@cached
def render_tag_posts(tag: Tag, page_number: int) -> str:
    """One page of the posts carrying ``tag``."""
    depends_on(tag)
    return _render_post_list(_post_list_queryset().filter(tags=tag), page_number)


@cached
def render_author_posts(author: Author, page_number: int) -> str:
    """One page of the posts written by ``author``."""
    depends_on(author)
    return _render_post_list(_post_list_queryset().filter(author=author), page_number)


@cached
def render_tag_cloud() -> str:
    """Every tag with its number of posts, for the front page."""
    depends_on(Tag, Post)
    tags = Tag.objects.annotate(post_count=Count("posts")).filter(post_count__gt=0)
    return render_to_string("blog/_tag_cloud.html", {"tags": list(tags)})


def _post_list_queryset() -> QuerySet[Post]:
    # One query for the posts with authors and comment counts, one for all their tags.
    return (
        Post.objects.select_related("author")
        .prefetch_related("tags")
        .annotate(comment_count=Count("comments", filter=Q(comments__approved=True)))
        .order_by("-published_at", "-pk")
    )


def _render_post_list(posts: QuerySet[Post], page_number: int) -> str:
    # A list shows posts, their authors, tags and comment counts, and which posts belong on
    # a page shifts with every new post: any change to these tables can change the page.
    depends_on(Post, Author, Tag, Comment)
    paginator = Paginator(posts, POSTS_PER_PAGE)
    try:
        page = paginator.page(page_number)
    except EmptyPage as exc:
        raise Http404("No such page.") from exc
    return render_to_string("blog/_post_list.html", {"page": page, "posts": page.object_list})
