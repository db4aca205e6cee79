"""The footer: hit or miss, how long the page took, its SQL queries and the tags it depends on.

The template leaves ``<!--blog:render-stats-->`` in the footer, and this middleware (outermost)
replaces it after the response is built, so a cached page (which carries the comment, not the
numbers) still reports the request that served it. Hit or miss comes from the ``X-Freshcache``
response header (``FRESHCACHE["HEADER"] = True``). The tags come from a freshcache scope opened
around the request: a hit adds the stored page's tags to it, a miss the tags its render read.
"""

import html
import os
import time
from collections.abc import Callable
from typing import Any

from django.db import connection
from django.http import HttpRequest, HttpResponse

from freshcache.scope import open_scope

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
        with connection.execute_wrapper(count_queries), open_scope("blog.footer") as scope:
            response = self.get_response(request)
        elapsed_ms = (time.perf_counter() - start) * 1000

        if response.streaming or not response.get("Content-Type", "").startswith("text/html"):
            return response
        if PLACEHOLDER not in response.content:
            return response
        state = response.get("X-Freshcache", "not cached").split(";")[0].strip()
        plural = "y" if queries == 1 else "ies"
        tags = sorted(scope.tags)
        shown = " ".join(html.escape(tag) for tag in tags[:MAX_TAGS_SHOWN])
        more = f" … and {len(tags) - MAX_TAGS_SHOWN} more" if len(tags) > MAX_TAGS_SHOWN else ""
        stats = (
            f'Cache <strong class="cache-state">{html.escape(state)}</strong>: '
            f"rendered in {elapsed_ms:.1f} ms with {queries} SQL quer{plural} "
            f'by process <span class="pid">{os.getpid()}</span>. '
            f'<details class="cache-tags"><summary>Depends on {len(tags)} '
            f'tag{"" if len(tags) == 1 else "s"}</summary><code>{shown}{more}</code></details>'
        )
        response.content = response.content.replace(PLACEHOLDER, stats.encode())
        if response.has_header("Content-Length"):
            response["Content-Length"] = str(len(response.content))
        etag = response.get("ETag")
        if etag and not etag.startswith("W/"):
            # The bytes now differ per request: only a weak validator is honest (a 304 still
            # works, If-None-Match compares weakly).
            response["ETag"] = "W/" + etag
        return response
