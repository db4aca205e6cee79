"""A page that takes 100 ms to render and reads the database, in a sync and an async form."""

import asyncio
import os
import time

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from blog.models import Post
from freshcache import cache_page, depends_on, invalidate

RENDER_SECONDS = 0.1
TAG = "flight:page"


def _count_render() -> None:
    # O_APPEND: each line lands whole, whichever worker process writes it.
    fd = os.open(os.environ["FLIGHT_RENDER_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)


@cache_page
def slow(request: HttpRequest) -> HttpResponse:
    depends_on(TAG)
    posts = Post.objects.count()
    time.sleep(RENDER_SECONDS)
    _count_render()
    return HttpResponse(f"<p>{posts} posts</p>")


@cache_page
async def aslow(request: HttpRequest) -> HttpResponse:
    depends_on(TAG)
    posts = await Post.objects.acount()  # a database connection per render under ASGI
    await asyncio.sleep(RENDER_SECONDS)
    _count_render()
    return HttpResponse(f"<p>{posts} posts</p>")


@csrf_exempt
@require_POST
def bump(request: HttpRequest) -> HttpResponse:
    invalidate(TAG)
    return HttpResponse("invalidated")
