"""The framework floor: the cheapest response Django can give through the blog's middleware."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

BODY = b"<!doctype html><title>floor</title><p>A constant response.</p>"


def floor(request: HttpRequest) -> HttpResponse:
    return HttpResponse(BODY)


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
