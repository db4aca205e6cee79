"""``CacheMiddleware``: the page cache for every GET/HEAD of the site.

Put it **after** (below) ``SessionMiddleware``, ``CsrfViewMiddleware``,
``AuthenticationMiddleware``, ``MessageMiddleware``, ``LocaleMiddleware`` and ``GZipMiddleware``::

    MIDDLEWARE = [
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.gzip.GZipMiddleware",              # compresses what we serve
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.locale.LocaleMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "freshcache.middleware.CacheMiddleware",              # last: wraps the view only
    ]

Why last: the middleware above it have done their request-side work (read the session and CSRF
cookies, set the language) before the page is looked up, and do their response-side work (set
the CSRF and session cookies, add ``Vary: Cookie``, compress) on the response we return, hit or
miss. So a stored page never contains another visitor's cookie, and on a hit the CSRF cookie is
set by ``CsrfViewMiddleware`` exactly as for an uncached render. A middleware placed *below* it
runs inside the cached render: whatever it reads from the request is tracked like the view's.

A view opts out with ``@never_cache`` (its ``Cache-Control`` forbids storing) and a path prefix
with ``FRESHCACHE["NEVER_CACHE_PATHS"]`` (e.g. ``["/admin/"]``).

A view cached by its own ``cache_page`` is left to it (issue 9 item 8): the innermost
declaration wins. The middleware resolves the URL before its lookup (Django resolves it only
after every middleware's request phase) and, when the callback is marked by ``cache_page``,
calls the view with no lookup, no guard, no store and no ``X-Freshcache`` of its own. Nesting
the two instead would look the page up twice, key it two ways (the middleware's whole query
string against the decorator's ``query_params``), and let the outer guard refuse what the inner
key covers (the user, with ``vary_on_user``). Whether a path's view caches itself is remembered
per URL resolver, language, method and path, in a bounded table, so a hit does not pay for a
second resolution.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.urls import get_resolver
from django.utils import translation

from ..conf import get_settings
from ..edge.response import mark_uncacheable
from ..outcome import collecting
from .decorators import caches_itself
from .serve import PageOptions, aserve, serve

__all__ = ["CacheMiddleware", "OutcomeMiddleware"]

_OPTIONS = PageOptions(namespace="site")
# (resolver, language, method, path_info) -> whether the view caches itself. Bounded: cleared
# when full, so random paths cost a resolution each, never memory. A new resolver (URLconf
# reloaded, ``override_settings(ROOT_URLCONF=...)``) is a different key.
_OWN_CACHE: dict[tuple[Any, str | None, str | None, str], bool] = {}
_OWN_CACHE_SIZE = 2048


def _view_caches_itself(request: HttpRequest) -> bool:
    """Whether the view this request resolves to is decorated with ``cache_page``."""
    try:
        urlconf = getattr(request, "urlconf", None)
        resolver = get_resolver(urlconf)
        key = (resolver, translation.get_language(), request.method, request.path_info)
        known = _OWN_CACHE.get(key)
        if known is not None:
            return known
        answer = caches_itself(resolver.resolve(request.path_info).func, request.method)
    except Exception:
        # Resolver404, or a broken URLconf: Django's own resolution reports it, below us.
        return False
    if len(_OWN_CACHE) >= _OWN_CACHE_SIZE:
        _OWN_CACHE.clear()
    _OWN_CACHE[key] = answer
    return answer


class CacheMiddleware:
    """Serve every GET/HEAD through the page cache, with the rules of ``cache_page``.

    Views decorated with ``cache_page`` are called straight through: their own options apply.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def _never(self, request: HttpRequest) -> bool:
        return any(request.path.startswith(p) for p in get_settings().never_cache_paths)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        if self._never(request):
            return _not_for_the_edge(self.get_response(request))
        if _view_caches_itself(request):
            return self.get_response(request)
        return serve(request, lambda: self.get_response(request), _OPTIONS)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        if self._never(request):
            return _not_for_the_edge(await get_response(request))
        if _view_caches_itself(request):
            return await get_response(request)
        return await aserve(request, lambda: get_response(request), _OPTIONS)


class OutcomeMiddleware:
    """Record each request's cache outcomes for ``freshcache.page_outcome(request)`` and
    ``freshcache.request_outcomes(request)`` (``freshcache.outcome``; docs/observability.md).

    Put it above ``CacheMiddleware`` (and above any middleware of yours that reads the outcome
    after ``get_response``, or below it: the outcome is on the request either way). Outcomes
    are recorded only while a request is inside it: a site without it pays nothing.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        with collecting(request):
            return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        with collecting(request):
            response: HttpResponseBase = await self.get_response(request)
            return response


def _not_for_the_edge(response: HttpResponseBase) -> HttpResponseBase:
    """A ``NEVER_CACHE_PATHS`` response: with an edge configured, uncacheable there too (no key
    could ever purge it; docs/edge.md)."""
    edge = get_settings().edge
    if edge.enabled:
        mark_uncacheable(response, edge)
    return response
