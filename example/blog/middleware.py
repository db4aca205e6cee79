"""The cache badge: hit or miss, why, the tags the page depends on, and how to ask why.

The base template leaves ``<!--blog:render-stats-->`` at the top of ``<body>``; this middleware
(outermost) replaces it after the response is built with ``blog/cache_badge.html``, a corner
badge. A cached page cannot show its own outcome (its body is what is stored, the same for every
visitor); this outer layer can: ``freshcache.middleware.OutcomeMiddleware`` records the outcome
of the page that served the request, and the badge template reads it with
``{% page_outcome as outcome %}`` (``freshcache.page_outcome(request)`` in Python).
"""

import os
import time
from collections.abc import Callable
from typing import Any

from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

import freshcache

PLACEHOLDER = b"<!--blog:render-stats-->"
MAX_TAGS_SHOWN = 60


class RenderStatsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        queries = 0

        def count_queries(execute: Callable[..., Any], *args: Any) -> Any:
            nonlocal queries
            queries += 1
            return execute(*args)

        start = time.perf_counter()
        with connection.execute_wrapper(count_queries):
            response = self.get_response(request)
        elapsed_ms = (time.perf_counter() - start) * 1000

        if response.streaming or not response.get("Content-Type", "").startswith("text/html"):
            return response
        if PLACEHOLDER not in response.content:
            return response
        outcome = freshcache.page_outcome(request)
        badge = render_to_string(
            "blog/cache_badge.html",
            {
                "elapsed_ms": elapsed_ms,
                "queries": queries,
                "pid": os.getpid(),
                "tags": sorted(outcome.tags) if outcome is not None else [],
                # The fragments and @cached functions computed or served inside a miss.
                "inside": [e for e in freshcache.request_outcomes(request) if e.kind != "page"],
                "max_tags": MAX_TAGS_SHOWN,
                "minus_max": -MAX_TAGS_SHOWN,
            },
            request=request,
        )
        response.content = response.content.replace(PLACEHOLDER, badge.encode())
        if response.has_header("Content-Length"):
            response["Content-Length"] = str(len(response.content))
        etag = response.get("ETag")
        if etag and not etag.startswith("W/"):
            # The bytes now differ per request: only a weak validator is honest (a 304 still
            # works, If-None-Match compares weakly).
            response["ETag"] = "W/" + etag
        return response
