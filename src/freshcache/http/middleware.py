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
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from ..conf import get_settings
from .serve import PageOptions, aserve, serve

__all__ = ["CacheMiddleware"]

_OPTIONS = PageOptions(namespace="site")


class CacheMiddleware:
    """Serve every GET/HEAD through the page cache, with the rules of ``cache_page``."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def _skip(self, request: HttpRequest) -> bool:
        return any(request.path.startswith(p) for p in get_settings().never_cache_paths)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        if self._skip(request):
            return self.get_response(request)
        return serve(request, lambda: self.get_response(request), _OPTIONS)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        if self._skip(request):
            return await get_response(request)
        return await aserve(request, lambda: get_response(request), _OPTIONS)
