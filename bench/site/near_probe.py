"""``X-Bench-Near-Hits``: how many of a request's lookups its process's near cache answered; and
``X-Bench-Early: 1`` on a response ``EarlyHitMiddleware`` gave.

Installed by ``bench/site/settings.py`` for the ``fc-near`` and ``fc-early`` variants when
``BENCH_HEADER=1`` (the freshness checker): a page hit with a near-cache hit was served from
memory, so the checker can show that its reads really exercised the near cache. It reads the
near cache's own count (``NearCache.hits``, per process): exact with gunicorn's sync workers, one
request at a time per process. Under ``fc-early`` it sits below ``EarlyHitMiddleware`` (trusted
there: it only adds a header), so an early hit repeats the count of the hit it was recorded
from; the early answers themselves are marked by a wrapper around the function that makes them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse


def _mark_early_hits() -> None:
    from freshcache.http import early

    answer = early._answer
    if getattr(answer, "bench_probe", False):
        return

    def marked(request: HttpRequest) -> Any:
        response = answer(request)
        if response is not None:
            response["X-Bench-Early"] = "1"
        return response

    marked.bench_probe = True  # type: ignore[attr-defined]
    early._answer = marked  # type: ignore[assignment]


class NearHitsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        _mark_early_hits()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        import freshcache

        near = freshcache.store().near  # type: ignore[attr-defined]
        before = near.hits
        response = self.get_response(request)
        response["X-Bench-Near-Hits"] = str(near.hits - before)
        return response
