"""The blog's pages: plain Django views with ``@cache_page`` on top.

No tags, no keys, no invalidation code: every page is cached until a row it read changes
(freshcache captures the ORM reads while the page renders, and every write path bumps them).
The post page also caches its article and its comment list as ``{% cachefresh %}`` fragments
(see ``post_detail.html``), so a new comment re-renders the list while the article stays cached.
"""

from django.core.paginator import EmptyPage, Paginator
from django.db.models import Count, F, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_safe

from blog.forms import CommentForm
from blog.models import Author, Post, Tag
from freshcache import cache_page, cached

POSTS_PER_PAGE = 10
# Large enough for any real blog, small enough that ?page=<garbage> cannot mint cache keys.
MAX_PAGE_DIGITS = 5


@cached
def tag_cloud() -> list[Tag]:
    """Every tag in use with its number of posts: cached until a tag or a post's tags change."""
    return list(Tag.objects.annotate(post_count=Count("posts")).filter(post_count__gt=0))


def _page(request: HttpRequest, posts: QuerySet[Post]) -> dict:
    raw = request.GET.get("page", "1")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= MAX_PAGE_DIGITS) or int(raw) < 1:
        raise Http404("No such page.")
    posts = (
        posts.select_related("author")
        .prefetch_related("tags")
        .annotate(comment_count=Count("comments", filter=Q(comments__approved=True)))
        .order_by("-published_at", "-pk")
    )
    try:
        page = Paginator(posts, POSTS_PER_PAGE).page(int(raw))
    except EmptyPage as exc:
        raise Http404("No such page.") from exc
    return {"page": page, "posts": page.object_list, "page_number": page.number}


# query_params: only ?page= matters; ?utm_source=… and friends share the cached page.
@cache_page(query_params=["page"])
@require_safe
def front_page(request: HttpRequest) -> HttpResponse:
    context = {**_page(request, Post.objects.all()), "tag_cloud": tag_cloud()}
    return render(request, "blog/front.html", context)


@cache_page(query_params=["page"])
@require_safe
def tag_detail(request: HttpRequest, slug: str) -> HttpResponse:
    tag = get_object_or_404(Tag, slug=slug)
    return render(request, "blog/tag_detail.html", {"tag": tag, **_page(request, tag.posts.all())})


@cache_page(query_params=["page"])
@require_safe
def author_detail(request: HttpRequest, slug: str) -> HttpResponse:
    author = get_object_or_404(Author, slug=slug)
    context = {"author": author, **_page(request, author.posts.all())}
    return render(request, "blog/author_detail.html", context)


@require_http_methods(["GET", "HEAD", "POST"])
def post_detail(request: HttpRequest, slug: str) -> HttpResponse:
    """Count the view, then serve the post page (from the cache when it is still fresh).

    The count runs here, outside the cached page, so that hits count too. ``view_count`` is in
    ``FRESHCACHE["VOLATILE_FIELDS"]``: this UPDATE invalidates nothing, and the number shown on
    the page is filled in per request by the ``view_count`` placeholder (``apps.py``).
    """
    if request.method == "GET":
        Post.objects.filter(slug=slug).update(view_count=F("view_count") + 1)
    return post_page(request, slug)


@cache_page
def post_page(request: HttpRequest, slug: str) -> HttpResponse:
    post = get_object_or_404(Post.objects.select_related("author"), slug=slug)
    if request.method == "POST":  # never cached: cache_page only stores GET
        form = CommentForm(request.POST)
        if form.is_valid():
            comment = form.save(commit=False)
            comment.post = post
            comment.save()
            # Post/Redirect/Get: a reload does not post the comment twice.
            return redirect(f"{post.get_absolute_url()}#comment-{comment.pk}")
    else:
        form = CommentForm()
    return render(request, "blog/post_detail.html", {"post": post, "form": form})


def view_count(request: HttpRequest) -> str:
    """The ``view_count`` placeholder: the current count of the post being served."""
    match = request.resolver_match
    slug = match.kwargs.get("slug") if match else None
    count = Post.objects.filter(slug=slug).values_list("view_count", flat=True).first()
    return str(count or 0)
