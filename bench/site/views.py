"""The framework floor: the cheapest response Django can give through the blog's middleware."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

BODY = b"<!doctype html><title>floor</title><p>A constant response.</p>"


def floor(request: HttpRequest) -> HttpResponse:
    return HttpResponse(BODY)


def flood_page(request: HttpRequest) -> HttpResponse:
    """The blog's front page without its own ``cache_page`` (which keys only ``?page=``): under
    site-wide ``CacheMiddleware`` every query string is an entry of its own
    (``bench/memory_flood.py``)."""
    from blog import views

    return views.front_page.__wrapped__(request)  # type: ignore[attr-defined,no-any-return]


_FRONT: dict[str, bytes] = {}


def floor_page(request: HttpRequest) -> HttpResponse:
    """The front page as a constant: its bytes, rendered once per process by the blog's view
    (freshcache off on the no-cache server that serves this), then returned as they are. What
    the page costs to send through this stack (its size, the footer's middleware) with no cache
    at all: the floor of the front pages' hits."""
    body = _FRONT.get("/")
    if body is None:
        from blog import views

        body = _FRONT["/"] = views.front_page(request).content
    return HttpResponse(body)


def counted(page: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The blog's ``post_detail`` (count the view on every GET, then serve the page) around
    another page view: so Django's ``cache_page`` variant does the same per-request work."""
    from django.db.models import F

    from blog.models import Post

    @require_http_methods(["GET", "HEAD", "POST"])
    def post_detail(request: HttpRequest, slug: str) -> HttpResponse:
        if request.method == "GET":
            Post.objects.filter(slug=slug).update(view_count=F("view_count") + 1)
        return page(request, slug=slug)

    return post_detail


def slow_page(request: HttpRequest) -> HttpResponse:
    """A 100 ms page that reads the database and counts its renders (``bench/single_flight.py``)
    in the file ``BENCH_RENDER_LOG``, one line per render, whichever worker renders it."""
    import os
    import time

    from blog.models import Post
    from freshcache import depends_on

    depends_on("bench:slow")
    posts = Post.objects.count()
    time.sleep(0.1)
    fd = os.open(os.environ["BENCH_RENDER_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"r\n")
    finally:
        os.close(fd)
    return HttpResponse(f"<p>{posts} posts</p>")


@csrf_exempt
def bump_slow(request: HttpRequest) -> HttpResponse:
    from freshcache import invalidate

    invalidate("bench:slow")
    return HttpResponse("invalidated")


def small_page(request: HttpRequest, pk: int) -> HttpResponse:
    """A few dozen bytes from one row: the smallest page worth caching (``bench/near_memory.py``
    floods the near cache with them, where the per-entry overheads weigh the most)."""
    from blog.models import Post

    return HttpResponse(Post.objects.values_list("title", flat=True).get(pk=pk))


def plain_post(request: HttpRequest, slug: str) -> HttpResponse:
    """A post's article and approved comments, with nothing per request (no form, no CSRF
    token, no view count): a page ``EarlyHitMiddleware`` may answer. The freshness checker reads
    these under the ``fc-early`` variant (``bench/freshness.py``)."""
    from django.shortcuts import get_object_or_404
    from django.template import engines

    from blog.models import Post

    post = get_object_or_404(Post.objects.select_related("author"), slug=slug)
    template = engines["django"].from_string(
        '{% include "blog/_post_article.html" %}{% include "blog/_comments.html" %}'
    )
    return HttpResponse(template.render({"post": post}, request))
