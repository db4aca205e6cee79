"""The issue's CMS shape: a cached page whose links come from a value kept in Django's cache
(derived from the database), and a write that changes the data and clears that value in the
process that handles it."""

from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from blog.models import Post
from freshcache import cache_page

KEY = "root-title"


def root_post() -> Post:
    return Post.objects.order_by("-pk").first()  # type: ignore[return-value]


@cache_page
def links(request: HttpRequest) -> HttpResponse:
    title = cache.get(KEY)
    if title is None:
        title = root_post().title
        cache.set(KEY, title)
    return HttpResponse(
        f"<html><body><p>root=[{title}]</p><!--blog:render-stats--></body></html>",
        content_type="text/html",
    )


@csrf_exempt
def move_root(request: HttpRequest) -> HttpResponse:
    post = root_post()
    post.title = request.POST["title"]
    post.save(update_fields=["title"])
    cache.delete(KEY)  # in this process's cache only, when CACHES is per process
    return HttpResponse("moved<!--blog:render-stats-->", content_type="text/html")


urlpatterns = [
    path("e2e/links/", links),
    path("e2e/move-root/", move_root),
    path("", include("mysite.urls")),
]
