"""Label page responses for the edge, or mark them uncacheable there (the HTTP shell).

The rule: **an edge may keep only what freshcache can tell it to purge, and only what every
visitor of that URL may be shown.** So, with ``FRESHCACHE["EDGE"]["KEYS"]`` set, every response
the page cache answers (``cache_page``, ``CacheMiddleware``) gets exactly one of:

* the key header of each configured edge (``Surrogate-Key``, ``Cache-Tag``, ``xkey``,
  ``Edge-Cache-Tag``), when it is a stored page (a hit, or a miss that was stored) that is the
  same for every visitor of its URL as far as an edge can tell (:func:`shared_refusal`), and its
  keys fit the header, rolled up if needed (``rollup.py``);
* otherwise ``Cache-Control: private`` and each edge's own "do not store" header
  (``edge/vendors.py`` cites what each one honours): a response freshcache did not store has no
  keys, so nothing could purge it from an edge, and a per-visitor page must never be kept there.

A response keeps the ``Cache-Control`` of the view and ``BROWSER_CACHE_CONTROL`` otherwise;
freshcache adds nothing that lets an edge keep a page longer (without purgers, an edge must
revalidate: ``no-cache``, the default, makes it ask, and the ETag makes that a 304; with
``EDGE["PURGERS"]``, the edge's own configuration may keep labelled pages: docs/edge.md). This
module never raises: on an error the response is marked uncacheable for the edge.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.utils import timezone
from django.utils.cache import patch_cache_control, patch_vary_headers

from ..conf import EdgeSettings, get_settings
from .rollup import Budget, label
from .vendors import EDGES

__all__ = ["annotate", "mark_uncacheable", "shared_refusal"]

logger = logging.getLogger("freshcache.edge")

#: Absent-input conditions an edge honours by itself: it keys on the whole URL and the method.
_URL_CONDITIONS = frozenset({"query", "rawquery", "method"})


def annotate(
    request: HttpRequest,
    response: HttpResponseBase,
    page: Any = None,
    tags: Iterable[str] = (),
    options: Any = None,
    header: bool = False,
) -> None:
    """Label ``response`` for the configured edges, or mark it uncacheable there.

    ``page``: the stored :class:`~freshcache.http.page.Page` it was served from (``None``: not
    stored); ``tags``: the page's tags; ``options``: its ``PageOptions``; ``header``: also say
    what was done in ``X-Freshcache-Edge`` (with ``FRESHCACHE["HEADER"]``).
    """
    edge = get_settings().edge
    if not edge.enabled:
        return
    why: str | None = "not stored"
    try:
        if page is not None:
            why = shared_refusal(request, response, page, options)
            if why is None and not edge.send_keys:
                why = "SEND_KEYS is False"
            if why is None:
                why = _label(response, tags, edge)
    except Exception as exc:  # never a 500 from freshcache: the safe side is "uncacheable"
        logger.exception("freshcache: could not label a response for the edge")
        why = f"internal error: {type(exc).__name__}"
    if why is not None:
        mark_uncacheable(response, edge)
    if header:
        response["X-Freshcache-Edge"] = "keys" if why is None else f"private; reason={why}"


def shared_refusal(
    request: HttpRequest, response: HttpResponseBase, page: Any, options: Any
) -> str | None:
    """Why a stored page may not be kept by an edge (``None``: it may).

    An edge keys on the URL and the headers the response's ``Vary`` names, and shows what it
    keeps to every visitor whose request matches those. freshcache keys on more (the user, the
    language and time zone) and serves a page only while what it found absent stays absent: each
    such difference that an edge cannot see makes the page private. Declared
    ``vary_on_headers`` are added to ``Vary`` so that the edge sees them.
    """
    if options is not None and options.vary_on_user:
        return "the page is cached per user"
    if page.slots:
        return "the page has per-request parts (a CSRF token, a CSP nonce or a placeholder)"
    if page.csrf_cookie or response.cookies:
        return "the response sets a cookie"
    effects = page.effects or {}
    if effects.get("session"):
        return "the page read the session (Vary: Cookie)"
    if effects.get("csp_nonce"):
        return "the page's CSP header carries a per-request nonce"
    for source, name in sorted(page.absent):
        if source not in _URL_CONDITIONS:
            return f"the page is served only to requests without {source} {name!r}"
    vary = {h.strip().lower() for h in response.get("Vary", "").split(",") if h.strip()}
    if "cookie" in vary or "*" in vary:
        return "the response varies on Cookie"
    if settings.USE_I18N and settings.LANGUAGE_COOKIE_NAME in request.COOKIES:
        return "the language may come from the visitor's cookie"
    if timezone.get_current_timezone_name() != timezone.get_default_timezone_name():
        return "a time zone of the visitor's is active"
    if options is not None and options.vary_on_headers:
        patch_vary_headers(response, options.vary_on_headers)
    return None


def _label(response: HttpResponseBase, tags: Iterable[str], edge: EdgeSettings) -> str | None:
    """Set each configured edge's key header; return why not when the keys cannot fit."""
    frozen = frozenset(tags)
    values: dict[str, str] = {}
    for name in edge.keys:
        vendor = EDGES[name]
        own: list[str] = []
        if vendor.header in response:
            # Keys the view set itself are kept, first, and count against the same limits.
            own = [k.strip() for k in response[vendor.header].split(vendor.separator)]
            own = [k for k in own if k]
        own_bytes = sum(len(k.encode("utf-8", "surrogatepass")) for k in own)
        keys = label(frozen, _budget(name, edge.max_header_bytes, len(own), own_bytes))
        if keys is None:
            return f"its keys do not fit the {vendor.header} header"
        values[vendor.header] = vendor.separator.join([*own, *keys])
    for header, value in values.items():
        response[header] = value
    return None


@lru_cache(maxsize=64)
def _budget(name: str, max_header_bytes: int | None, own_keys: int, own_bytes: int) -> Budget:
    vendor = EDGES[name]
    max_bytes = vendor.max_header_bytes
    if max_header_bytes is not None:
        max_bytes = min(max_bytes, max_header_bytes)
    return Budget(
        max_bytes=max_bytes,
        max_keys=vendor.max_keys,
        separator_bytes=len(vendor.separator),
        fixed_keys=own_keys,
        fixed_bytes=own_bytes,
    )


def mark_uncacheable(response: HttpResponseBase, edge: EdgeSettings | None = None) -> None:
    """Tell every shared cache, and each configured edge in its own words, not to store
    ``response``. Never raises."""
    edge = edge or get_settings().edge
    try:
        patch_cache_control(response, private=True)
        for name in edge.keys:
            header, value = EDGES[name].no_store
            response[header] = value
    except Exception:
        logger.exception("freshcache: could not mark a response uncacheable for the edge")
