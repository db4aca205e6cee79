"""Responses that read after the view returns (issue 9, item 2), under ``cache_page`` and the
site-wide middleware.

A ``TemplateResponse`` (every generic class-based view returns one) is rendered after the view
returns: its template's reads, of the database and of the request, must happen inside the page's
computation and its guard, or the page must not be stored. A streaming response is never stored.
The views live here; ``urlpatterns`` below is this module's URLconf.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponse, StreamingHttpResponse
from django.template import engines
from django.template.response import SimpleTemplateResponse, TemplateResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import include, path
from django.utils.decorators import method_decorator
from django.views.generic import ListView

from blog.models import Author, Post
from freshcache.http import cache_page
from tests.http.conftest import state

pytestmark = pytest.mark.urls("tests.http.test_lazy_responses")

LISTING = "{% for p in posts %}{{ p.title }};{% endfor %}"
CONSENT = "{% for p in posts %}{{ p.title }};{% endfor %}consent={{ request.COOKIES.consent }}"


def _template(source: str = LISTING):  # type: ignore[no-untyped-def]
    return engines["django"].from_string(source)


def _posts():  # type: ignore[no-untyped-def]
    return Post.objects.order_by("title")  # lazy: the template runs the query


@cache_page
def template_view(request: HttpRequest) -> TemplateResponse:
    return TemplateResponse(request, _template(), {"posts": _posts()})


@cache_page
def simple_template_view(request: HttpRequest) -> SimpleTemplateResponse:
    return SimpleTemplateResponse(_template(), {"posts": _posts()})


@cache_page
async def async_template_view(request: HttpRequest) -> TemplateResponse:
    return TemplateResponse(request, _template(), {"posts": _posts()})


@cache_page
def cookie_template_view(request: HttpRequest) -> TemplateResponse:
    return TemplateResponse(request, _template(CONSENT), {"posts": _posts()})


@method_decorator(cache_page, name="dispatch")
class PostList(ListView):  # type: ignore[type-arg]
    """The documented way to cache a class-based view (docs/pages.md)."""

    queryset = Post.objects.order_by("title")

    def render_to_response(self, context, **kwargs):  # type: ignore[no-untyped-def]
        return TemplateResponse(self.request, _template(), {"posts": context["object_list"]})


def plain_template_view(request: HttpRequest) -> TemplateResponse:
    """Not decorated: cached by the middleware only."""
    return TemplateResponse(request, _template(), {"posts": _posts()})


def _titles() -> Iterator[bytes]:
    for p in _posts():  # runs while the response is sent, after the view returned
        yield f"{p.title};".encode()


@cache_page
def streaming_view(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(_titles())


@cache_page
def file_view(request: HttpRequest) -> FileResponse:
    import io

    return FileResponse(io.BytesIO(b"".join(_titles())))


def plain_streaming_view(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(_titles())


def plain_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("".join(f"{p.title};" for p in _posts()))


urlpatterns = [
    path("template/", template_view),
    path("simple-template/", simple_template_view),
    path("async-template/", async_template_view),
    path("cookie-template/", cookie_template_view),
    path("list/", PostList.as_view()),
    path("site-template/", plain_template_view),
    path("stream/", streaming_view),
    path("file/", file_view),
    path("site-stream/", plain_streaming_view),
    path("site-plain/", plain_view),
    path("", include("blog.urls")),  # the blog's models reverse its URLs when they change
]

SITE_WIDE = [*settings.MIDDLEWARE, "freshcache.middleware.CacheMiddleware"]


def _author() -> Author:
    return Author.objects.get_or_create(name="Ann", slug="ann")[0]


def _post(title: str) -> Post:
    return Post.objects.create(author=_author(), title=title, slug=title, body="x")


def _fresh_after_a_write(client: Client, url: str) -> None:
    """The page is stored, served as a hit, and a new post makes the next request miss."""
    _post("b")
    first = client.get(url)
    assert state(first) == "miss", first["X-Freshcache"]
    assert first.content == b"b;"
    hit = client.get(url)
    assert (state(hit), hit.content) == ("hit", b"b;")
    _post("a")
    after = client.get(url)
    assert (state(after), after.content) == ("miss", b"a;b;")


@pytest.mark.parametrize("url", ["/template/", "/simple-template/", "/list/"])
def test_a_template_response_is_rendered_inside_the_page(client: Client, url: str) -> None:
    _fresh_after_a_write(client, url)


def test_a_template_response_under_the_site_wide_middleware(client: Client) -> None:
    with override_settings(MIDDLEWARE=SITE_WIDE):
        _fresh_after_a_write(client, "/site-template/")


def test_a_template_response_cached_by_the_decorator_and_the_middleware(client: Client) -> None:
    with override_settings(MIDDLEWARE=SITE_WIDE):
        _fresh_after_a_write(client, "/template/")


async def test_an_async_view_returning_a_template_response(page_store: None) -> None:
    from asgiref.sync import sync_to_async

    client = AsyncClient()
    await sync_to_async(_post)("b")
    first = await client.get("/async-template/")
    assert (state(first), first.content) == ("miss", b"b;")
    hit = await client.get("/async-template/")
    assert (state(hit), hit.content) == ("hit", b"b;")
    await sync_to_async(_post)("a")
    after = await client.get("/async-template/")
    assert (state(after), after.content) == ("miss", b"a;b;")


def test_what_the_template_reads_from_the_request_is_guarded(client: Client) -> None:
    _post("b")
    client.cookies["consent"] = "yes"
    with_cookie = client.get("/cookie-template/")
    assert with_cookie.content == b"b;consent=yes"
    assert state(with_cookie) == "bypass"
    visitor = Client()
    clean = visitor.get("/cookie-template/")
    assert (state(clean), clean.content) == ("miss", b"b;consent=")
    assert b"yes" not in visitor.get("/cookie-template/").content
    again = client.get("/cookie-template/")
    assert (state(again), again.content) == ("bypass", b"b;consent=yes")


@pytest.mark.parametrize("url", ["/stream/", "/file/"])
def test_a_streaming_response_is_never_stored(client: Client, url: str) -> None:
    _post("b")
    for expected in (b"b;", b"a;b;"):
        response = client.get(url)
        assert state(response) == "bypass"
        assert "streaming response" in response["X-Freshcache"]
        assert b"".join(response.streaming_content) == expected
        if expected == b"b;":
            _post("a")


def test_a_streaming_response_under_the_site_wide_middleware(client: Client) -> None:
    _post("b")
    with override_settings(MIDDLEWARE=SITE_WIDE):
        for expected in (b"b;", b"a;b;"):
            response = client.get("/site-stream/")
            assert state(response) == "bypass"
            assert "streaming response" in response["X-Freshcache"]
            assert b"".join(response.streaming_content) == expected
            if expected == b"b;":
                _post("a")
        # The control: the same listing as a plain response is stored and refreshed.
        _fresh_after_a_write_again(client)


def _fresh_after_a_write_again(client: Client) -> None:
    assert state(client.get("/site-plain/")) == "miss"
    assert state(client.get("/site-plain/")) == "hit"
    _post("c")
    after = client.get("/site-plain/")
    assert (state(after), after.content) == ("miss", b"a;b;c;")
