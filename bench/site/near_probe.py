"""``X-Bench-Near-Hits``: how many of a request's lookups its process's near cache answered.

Installed by ``bench/site/settings.py`` for the ``fc-near`` variant when ``BENCH_HEADER=1`` (the
freshness checker), outermost: a page hit with a near-cache hit was served from memory, so the
checker can show that its reads really exercised the near cache. It reads the near cache's own
count (``NearCache.hits``, per process): exact with gunicorn's sync workers, one request at a
time per process.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


class NearHitsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        import freshcache

        near = freshcache.store().near  # type: ignore[attr-defined]
        before = near.hits
        response = self.get_response(request)
        response["X-Bench-Near-Hits"] = str(near.hits - before)
        return response
