"""Fill in the footer's render statistics: how long the page took and how many SQL queries.

The template leaves a placeholder rather than the numbers, so a cached page (which carries
the placeholder) still reports the cost of the request that served it, hit or miss.
"""

import time
from collections.abc import Callable
from typing import Any

from django.db import connection
from django.http import HttpRequest, HttpResponse

PLACEHOLDER = b"<!--blog:render-stats-->"


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
        if PLACEHOLDER in response.content:
            plural = "y" if queries == 1 else "ies"
            stats = f"Page rendered in {elapsed_ms:.1f} ms with {queries} SQL quer{plural}."
            response.content = response.content.replace(PLACEHOLDER, stats.encode())
            if response.has_header("Content-Length"):
                response["Content-Length"] = str(len(response.content))
        return response
