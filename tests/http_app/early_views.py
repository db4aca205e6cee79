"""Views and a middleware for the early-hit tests (tests/http/test_early_hits.py)."""

from __future__ import annotations

from collections.abc import Callable
from itertools import count

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils import translation

from freshcache.http import cache_page
from tests.testapp.models import Item

from .views import _count

#: Calls of the function around a cached view, and of the stamping middleware.
WRAPS: list[str] = []
_stamps = count(1)


@cache_page
def item(request: HttpRequest, pk: int) -> HttpResponse:
    """A page built from a row: another process's write to it must reach every early hit."""
    _count(f"item:{pk}")
    return HttpResponse(f"item {Item.objects.get(pk=pk).value}")


@cache_page
def language(request: HttpRequest) -> HttpResponse:
    """A page keyed by the active language (``LocaleMiddleware`` sets it per request)."""
    _count("language")
    return HttpResponse(f"language {translation.get_language()}")


@cache_page
def moved(request: HttpRequest) -> HttpResponse:
    """A cached redirect (with 302 in ``CACHE_STATUSES``)."""
    _count("moved")
    return HttpResponseRedirect("/t/plain/")


@cache_page
def _inner(request: HttpRequest) -> HttpResponse:
    _count("wrapped")
    return HttpResponse("wrapped page")


def wrapped(request: HttpRequest) -> HttpResponse:
    """A function around a cached view: it must run on every request, hits included."""
    WRAPS.append(request.path)
    return _inner(request)


class StampMiddleware:
    """A project's middleware freshcache does not know: it stamps each response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response["X-Stamp"] = str(next(_stamps))
        return response
