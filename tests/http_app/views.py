"""Views exercising every rule of the page cache. ``RENDERS`` counts real renders per view."""

from __future__ import annotations

import asyncio
from collections import Counter

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from freshcache.functions import cached, depends_on
from freshcache.http import cache_page

RENDERS: Counter[str] = Counter()


def _count(name: str) -> int:
    RENDERS[name] += 1
    return RENDERS[name]


@cache_page
def plain(request: HttpRequest) -> HttpResponse:
    depends_on("http:plain")
    return HttpResponse(f"plain render {_count('plain')}")


@cache_page
def echo_query(request: HttpRequest) -> HttpResponse:
    _count("echo_query")
    return HttpResponse("q=" + request.GET.get("q", "") + " full=" + request.get_full_path())


@cache_page(query_params=["page"])
def allowlisted(request: HttpRequest) -> HttpResponse:
    _count("allowlisted")
    text = "page=" + request.GET.get("page", "1")
    if "debug" in request.GET:
        text += " debug=" + request.GET["debug"]
    return HttpResponse(text)


@cache_page
def form(request: HttpRequest) -> HttpResponse:
    _count("form")
    return render(request, "http_app/form.html")


def submit(request: HttpRequest) -> HttpResponse:
    return HttpResponse("posted " + request.POST.get("text", ""))


@cache_page
def reads_cookie(request: HttpRequest) -> HttpResponse:
    _count("reads_cookie")
    return HttpResponse("theme=" + request.COOKIES.get("theme", "light"))


@cache_page
def reflect_headers(request: HttpRequest) -> HttpResponse:
    """A poisoning target: reflects headers a proxy might set."""
    _count("reflect_headers")
    parts = [
        request.META.get("HTTP_X_FORWARDED_HOST", ""),
        request.headers.get("X-Original-URL", ""),
        request.META.get("HTTP_X_HTTP_METHOD_OVERRIDE", ""),
        request.headers.get("Forwarded", ""),
        request.build_absolute_uri(),
    ]
    return HttpResponse("|".join(parts))


@cache_page
def who(request: HttpRequest, **kwargs: str) -> HttpResponse:
    _count("who")
    return render(request, "http_app/who.html")


@cache_page(vary_on_user=True)
def per_user(request: HttpRequest) -> HttpResponse:
    _count("per_user")
    name = request.user.get_username() if request.user.is_authenticated else "anonymous"
    return HttpResponse(f"hello {name}")


@cache_page
def with_messages(request: HttpRequest) -> HttpResponse:
    _count("with_messages")
    return render(request, "http_app/messages.html")


def add_message(request: HttpRequest) -> HttpResponse:
    messages.info(request, "secret-message-canary")
    return HttpResponse("added")


@cache_page(vary_on_headers=["Accept-Language"])
def declared_vary(request: HttpRequest) -> HttpResponse:
    _count("declared_vary")
    return HttpResponse("lang=" + request.headers.get("Accept-Language", "none"))


@cache_page
@vary_on_headers("X-Variant")
def learned_vary(request: HttpRequest) -> HttpResponse:
    _count("learned_vary")
    return HttpResponse("variant=" + request.headers.get("X-Variant", "none"))


@cache_page
def sets_cookie(request: HttpRequest) -> HttpResponse:
    _count("sets_cookie")
    response = HttpResponse("cookie")
    response.set_cookie("tracking", "abc")
    return response


@cache_page
@never_cache
def not_cached(request: HttpRequest) -> HttpResponse:
    _count("not_cached")
    return HttpResponse("never")


@cache_page
def error(request: HttpRequest) -> HttpResponse:
    _count("error")
    return HttpResponse("boom", status=int(request.GET.get("status", "500")))


@cache_page(statuses=(200, 404))
def missing(request: HttpRequest) -> HttpResponse:
    _count("missing")
    return HttpResponse("gone", status=404)


@cache_page
def streaming(request: HttpRequest) -> StreamingHttpResponse:
    _count("streaming")
    return StreamingHttpResponse(iter([b"a", b"b"]))


@cache_page
@require_GET
def get_only(request: HttpRequest) -> HttpResponse:
    _count("get_only")
    return HttpResponse("get only")


@cache_page
async def async_view(request: HttpRequest) -> HttpResponse:
    await asyncio.sleep(0)
    depends_on("http:async")
    return HttpResponse(f"async render {_count('async_view')}")


@cache_page
async def async_tagged(request: HttpRequest, n: int) -> HttpResponse:
    depends_on(f"http:async:{n}")
    await asyncio.sleep(0.01)
    _count("async_tagged")
    return HttpResponse(f"async page {n}")


@method_decorator(cache_page, name="dispatch")
class ClassView(View):
    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse(f"class render {_count('class_view')}")


def _counting(name: str):  # type: ignore[no-untyped-def]
    """A context value that counts its renders and depends on the tag ``frag:<name>``."""

    def value() -> int:
        depends_on(f"frag:{name}")
        return _count(name)

    return value


def _fragment_context(n: str) -> dict[str, object]:
    return {"n": n, "outer_count": _counting("outer"), "inner_count": _counting("inner")}


@cache_page
def fragments(request: HttpRequest) -> HttpResponse:
    _count("fragments")
    return render(request, "http_app/fragments.html", _fragment_context(request.GET.get("n", "1")))


def fragments_uncached(request: HttpRequest) -> HttpResponse:
    return render(request, "http_app/fragments.html", _fragment_context("1"))


def jinja(request: HttpRequest) -> HttpResponse:
    return render(request, "http_app/fragments.jinja", _fragment_context("1"), using="jinja2")


@cache_page
@ensure_csrf_cookie
def spa(request: HttpRequest) -> HttpResponse:
    _count("spa")
    return HttpResponse("spa shell")


@cache_page
def placeholder_page(request: HttpRequest) -> HttpResponse:
    _count("placeholder_page")
    return render(request, "http_app/placeholder.html")


@cache_page(tags=lambda request, slug: [f"article:{slug}"])
def article(request: HttpRequest, slug: str) -> HttpResponse:
    return HttpResponse(f"article {slug} render {_count('article:' + slug)}")


# -- the middleware and the decorator on one view (issue 9 item 8) ------------------------------
def _username(request: HttpRequest) -> str:
    return request.user.get_username() if request.user.is_authenticated else "anonymous"


def _listing(request: HttpRequest, name: str, who: str) -> HttpResponse:
    _count(name)
    return HttpResponse(f"{name} page={request.GET.get('page', '1')} user={who}")


def listing_plain(request: HttpRequest) -> HttpResponse:
    return _listing(request, "listing_plain", _username(request))


@cache_page(query_params=["page"], vary_on_user=True)
def listing(request: HttpRequest) -> HttpResponse:
    return _listing(request, "listing", _username(request))


@cache_page(query_params=["page"], vary_on_user=True)
async def async_listing(request: HttpRequest) -> HttpResponse:
    who = await sync_to_async(_username)(request)
    return _listing(request, "async_listing", who)


@method_decorator(cache_page(query_params=["page"], vary_on_user=True), name="dispatch")
class ListingView(View):
    def get(self, request: HttpRequest) -> HttpResponse:
        return _listing(request, "listing_class", _username(request))


class ListingGetView(View):
    @method_decorator(cache_page(query_params=["page"], vary_on_user=True))
    def get(self, request: HttpRequest) -> HttpResponse:
        return _listing(request, "listing_get", _username(request))


@never_cache
def never_plain(request: HttpRequest) -> HttpResponse:
    _count("never_plain")
    return HttpResponse("never plain")


@cached
def _expensive(n: int) -> int:
    depends_on(f"fn:{n}")
    return _count("expensive")


def uses_cached(request: HttpRequest) -> HttpResponse:
    _count("uses_cached")
    return HttpResponse(f"value {_expensive(1)}")
