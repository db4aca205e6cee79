"""Views for tests/edge/test_breakit_12.py: pages whose key has more than their path."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.middleware.locale import LocaleMiddleware
from django.urls import include, path
from django.utils import timezone, translation
from django.utils.decorators import decorator_from_middleware

from freshcache.functions import depends_on
from freshcache.http import cache_page


@cache_page
def host(request: HttpRequest) -> HttpResponse:
    """A page with an absolute link (a tenant's site, a canonical URL): keyed by host."""
    depends_on("breakit:host")
    return HttpResponse("<a href='" + request.build_absolute_uri("/b/") + "'>home</a>")


@cache_page
def language(request: HttpRequest) -> HttpResponse:
    """A page in the active language (chosen by LocaleMiddleware or a middleware of the site)."""
    depends_on("breakit:language")
    return HttpResponse("language=" + str(translation.get_language()))


@cache_page
def zone(request: HttpRequest) -> HttpResponse:
    """A page in the active time zone (activated by a middleware from a cookie)."""
    depends_on("breakit:zone")
    return HttpResponse("zone=" + timezone.get_current_timezone_name())


@cache_page
def anything(request: HttpRequest, rest: str) -> HttpResponse:
    depends_on("breakit:any")
    return HttpResponse("rest=" + rest)


#: Tags with bytes outside the edge alphabet, one very long, and a predicate with spaces.
ODD_TAGS = ("météo-ü/ß", "天気", "x" * 5000, "blog.comment?author=a b,c;d", "emoji-\U0001f600")


@cache_page
def odd_tags(request: HttpRequest) -> HttpResponse:
    depends_on(*ODD_TAGS)
    from django.core.cache import caches  # noqa: F401 - nothing: the tags are the point

    return HttpResponse("version=" + request.path)


@cache_page
def latin1(request: HttpRequest) -> HttpResponse:
    depends_on("breakit:latin1")
    return HttpResponse("café".encode("latin-1"), content_type="text/html; charset=iso-8859-1")


@cache_page
def gzipped(request: HttpRequest) -> HttpResponse:
    import gzip

    depends_on("breakit:gzipped")
    response = HttpResponse(gzip.compress(b"<p>zipped</p>"), content_type="text/html")
    response["Content-Encoding"] = "gzip"
    return response


def zone_middleware(
    get_response: Callable[[HttpRequest], HttpResponse],
) -> Callable[..., HttpResponse]:
    """The Django docs' time zone middleware, from a cookie."""

    def middleware(request: HttpRequest) -> HttpResponse:
        name = request.COOKIES.get("zone")
        if name:
            import zoneinfo

            timezone.activate(zoneinfo.ZoneInfo(name))
        else:
            timezone.deactivate()
        return get_response(request)

    return middleware


#: As with the middleware in MIDDLEWARE (the live server's handler loaded its middleware once).
localized = decorator_from_middleware(LocaleMiddleware)(language)
zoned = zone_middleware(zone)

urlpatterns = [
    path("b/host/", host),
    path("b/language/", localized),
    path("b/zone/", zoned),
    path("b/any/<path:rest>", anything),
    path("b/odd-tags/", odd_tags),
    path("b/latin1/", latin1),
    path("b/gzipped/", gzipped),
    path("", include("tests.edge.views")),
]
