"""A small site for the command tests: a page showing a row, a page that counts its own views
in the row it shows (the forum topic of issue 13), a page varying on a header, and a cached
function."""

from __future__ import annotations

from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils.cache import patch_vary_headers

from freshcache import cache_page, cached
from tests.testapp.models import Item


@cache_page
def item(request: HttpRequest, pk: int) -> HttpResponse:
    row = Item.objects.get(pk=pk)
    return HttpResponse(f"<h1>{row.name}</h1>")


@cache_page
def topic(request: HttpRequest, pk: int) -> HttpResponse:
    """Shows a row and counts the view in that same row while rendering."""
    row = Item.objects.get(pk=pk)
    Item.objects.filter(pk=pk).update(value=F("value") + 1)
    return HttpResponse(f"<h1>{row.name}</h1> seen {row.value} times")


@cache_page
def greeting(request: HttpRequest) -> HttpResponse:
    """Varies on a header it does not declare: a Vary marker is stored under the URL's key."""
    hello = {"fr": "bonjour"}.get(request.headers.get("Accept-Language", ""), "hello")
    response = HttpResponse(f"{hello} {Item.objects.count()}")
    patch_vary_headers(response, ["Accept-Language"])
    return response


def plain(request: HttpRequest) -> HttpResponse:
    return HttpResponse("not cached")


@cached
def count_named(name: str) -> int:
    return Item.objects.filter(name=name).count()


urlpatterns = [
    path("item/<int:pk>/", item, name="item"),
    path("topic/<int:pk>/", topic, name="topic"),
    path("greeting/", greeting, name="greeting"),
    path("plain/", plain, name="plain"),
]


@cached
def touch_other(read: int, written: int) -> str:
    """Reads one row and updates another: it wrote, but not a row it read."""
    name = Item.objects.get(pk=read).name
    Item.objects.filter(pk=written).update(value=F("value") + 1)
    return name
