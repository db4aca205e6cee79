"""Views for the edge tests: pages with many tags, and an undecorated one for the middleware."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.decorators.http import require_safe

from freshcache.functions import depends_on
from freshcache.http import cache_page


@cache_page
def rows(request: HttpRequest, n: int) -> HttpResponse:
    """A listing that read ``n`` rows of one table (and the table itself)."""
    depends_on(*(f"blog.post:{i}" for i in range(n)))
    return HttpResponse(f"{n} rows")


@cache_page
def topics(request: HttpRequest, n: int) -> HttpResponse:
    """A page with ``n`` free-form tags that have no table to roll up to."""
    depends_on(*(f"topic-{i}" for i in range(n)))
    return HttpResponse(f"{n} topics")


@cache_page
def own_keys(request: HttpRequest) -> HttpResponse:
    """A view that labels its page itself too."""
    depends_on("http:own")
    response = HttpResponse("own")
    response["Surrogate-Key"] = "mine"
    return response


@cache_page
def item(request: HttpRequest, pk: int) -> HttpResponse:
    """One row's value (its tags come from the ORM read)."""
    from tests.testapp.models import Item

    return HttpResponse(str(Item.objects.get(pk=pk).value))


@cache_page
@require_safe
def safe_item(request: HttpRequest, pk: int) -> HttpResponse:
    """:func:`item` behind ``@require_safe``, as the example blog's front page: the render reads
    ``request.method`` (the stored page holds for GET only)."""
    from tests.testapp.models import Item

    return HttpResponse(str(Item.objects.get(pk=pk).value))


def site(request: HttpRequest) -> HttpResponse:
    """Undecorated: cached by ``CacheMiddleware`` when it is installed."""
    depends_on("http:site")
    return HttpResponse("site")


#: The topic ``same_body`` depends on (tests change it: a new render, the same bytes).
TOPIC = ["topic-a"]


@cache_page
def same_body(request: HttpRequest) -> HttpResponse:
    """A page whose bytes never change while what it depends on does."""
    depends_on(TOPIC[0])
    return HttpResponse("same")


urlpatterns = [
    path("e/same/", same_body),
    path("e/rows/<int:n>/", rows),
    path("e/topics/<int:n>/", topics),
    path("e/own/", own_keys),
    path("e/item/<int:pk>/", item),
    path("post/<int:pk>/", item),  # docs/edge.md's static publishing example publishes ^/post/
    path("safe/<int:pk>/", safe_item),
    path("e/site/", site),
    path("e/private/site/", site),
    path("t/", include("tests.http_app.urls")),
]
