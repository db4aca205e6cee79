"""The dashboard's views: the page, and ``data/`` (JSON: the page's body again, and the totals
the live chart plots). Both are served through the admin (``admin.py``): staff only."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

from .data import gather

__all__ = ["POLL_SECONDS", "body", "data"]

#: Seconds between two polls of ``data/`` by the page.
POLL_SECONDS = 2


def body(request: HttpRequest) -> tuple[str, dict[str, object]]:
    """The dashboard's body (HTML) and the live totals."""
    board = gather()
    html = render_to_string("freshcache/dashboard/body.html", {"board": board}, request)
    return html, {"at": board.at, "hits": board.hits, "requests": board.requests}


def data(request: HttpRequest) -> HttpResponse:
    html, totals = body(request)
    response = JsonResponse({"html": html, **totals})
    response["Cache-Control"] = "no-store"
    return response
