"""Early hits: a stored page answered before Django's middleware runs (opt-in).

``EarlyHitMiddleware``, first in ``MIDDLEWARE``, answers a request with the exact response the
whole stack gave an earlier hit of the same kind, skipping the middleware below it, the URL
resolver and the view. It is sound by construction, not by trust in a page:

1. **Only requests nothing below can tell apart.** A ``GET`` with no ``Cookie``, no
   ``Authorization``, no body and no conditional or range header (``If-None-Match``, ``Range``…).
   Every middleware below must be one whose per-request work is known (:data:`KNOWN_MIDDLEWARE`:
   Django's own, each with the request headers it reads) or one the project vouches for
   (``FRESHCACHE["EARLY_HITS_TRUSTED_MIDDLEWARE"]``); otherwise the middleware is not used
   (``MiddlewareNotUsed``) and ``manage.py check`` says why (freshcache.W012).
2. **Keyed on every input the stack reads.** The early key is the request's scheme, the raw
   headers the host, port and path come from (``keys.derived_meta``), the raw query string, the
   language and time zone, and the value of every header the response depends on: those the
   middleware read, those the page is keyed on, those its ``Vary`` names and those the page
   needs absent.
3. **Recorded from a hit, checked like a hit.** The response is recorded only when it was
   served from a stored page (never from a render), by the view the URL resolved to (a
   function around ``cache_page`` would do work a replay skips), and only if that page has no
   per-request part (no placeholders, no CSRF token, nothing replayed on the request) and the
   final response sets no cookie and carries no date. The record hangs on the decoded page
   (``Page.early``), and an early hit first looks the page up exactly as a hit does
   (``core.find``: the store validates the entry's tags; a near cache answers from memory with
   its channel healthy and drained): a page invalidated takes its records with it, since the
   page found then is another object.

A request without a record goes down the stack, which records one on its next hit. See
docs/pages.md ("Early hits") and docs/internals.md.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings as django_settings
from django.core.exceptions import MiddlewareNotUsed
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils import timezone, translation

from ... import counters, events
from ...conf import get_settings
from ...core import Outcome, afind, find
from .. import shadow
from ..keys import derived_meta, header_meta_name
from ..names import view_name
from ..page import PAGE_CODEC, Page, vary_headers
from .checks import (
    KNOWN_MIDDLEWARE,
    LOCALE,
    NEVER_TRUSTED,
    check_early_hits,
    is_early,
    middleware_reads,
    why_off,
)

__all__ = [
    "KNOWN_MIDDLEWARE", "NEVER_TRUSTED", "EarlyHitMiddleware", "check_early_hits", "why_off",
]

logger = logging.getLogger("freshcache.http")

#: Request headers that make a request ineligible: the answer depends on them in ways a
#: recorded response cannot repeat (RFC 9110 sections 13.1 and 14.2).
_INELIGIBLE = (
    "HTTP_AUTHORIZATION",
    "HTTP_IF_NONE_MATCH",
    "HTTP_IF_MODIFIED_SINCE",
    "HTTP_IF_MATCH",
    "HTTP_IF_UNMODIFIED_SINCE",
    "HTTP_IF_RANGE",
    "HTTP_RANGE",
    "HTTP_TRANSFER_ENCODING",
)
#: Response headers that make a response not recordable: each is per response.
_PER_RESPONSE = frozenset({"set-cookie", "date", "expires", "age"})
#: Records kept per page (one per combination of the headers it depends on), and early keys
#: indexed per process; past the bound the index starts again (a lookup then goes down the
#: stack, once).
PER_PAGE = 16
INDEX_SIZE = 10_000

#: The request attribute on which the middleware leaves the request's early key.
_KEY = "_freshcache_early"
#: The request attribute on which ``serve`` leaves the hit it served (:func:`note_hit`).
_NOTE = "_freshcache_early_hit"


@dataclass(frozen=True, slots=True)
class _Target:
    """Where an early key's page lives: its store, its key (as ``fetch`` takes it)."""

    store: str | None
    key: str


@dataclass(frozen=True, slots=True)
class _Record:
    """The response the whole stack gave, as it left the outermost middleware."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    view: str
    #: The response's class when it is one of ``django.http``'s (a redirect keeps ``.url``).
    kind: type[HttpResponse] = HttpResponse


@dataclass(frozen=True, slots=True)
class _Note:
    caller: Any
    target: _Target
    page: Page
    view: str
    headers: tuple[str, ...]
    active: tuple[str | None, str]


_lock = threading.Lock()
#: The URL part of an early key -> the ``META`` names of the headers its page depends on.
_shapes: dict[tuple[Any, ...], tuple[str, ...]] = {}
#: Full early key -> the page it was recorded from.
_index: dict[tuple[Any, ...], _Target] = {}


def _url_key(request: HttpRequest) -> tuple[Any, ...] | None:
    """The early key's part that names the URL, or ``None``: the request is not eligible."""
    if request.method != "GET":
        return None
    meta = request.META
    if meta.get("HTTP_COOKIE"):  # an empty Cookie header is no cookie (RequestFactory sends one)
        return None
    for name in _INELIGIBLE:
        if name in meta:
            return None
    if meta.get("CONTENT_LENGTH") not in (None, "", "0"):
        return None
    return (
        request.scheme,
        *(meta.get(name) for name in derived_meta()),
        meta.get("QUERY_STRING", ""),
    )


def _active() -> tuple[str | None, str]:
    """The language and time zone the page is keyed with. A thread keeps what its last request
    left unless a middleware sets them per request, so a record is keyed by those its page was
    keyed with, and looked up with those active on arrival: they match only when the stack
    would key the page with them again. ``LocaleMiddleware`` sets the language from the path
    and the ``Accept-Language`` header (no cookie: ineligible requests only), both in the early
    key, whatever was active on arrival: with it, the language is left out of the key."""
    language = None if LOCALE in django_settings.MIDDLEWARE else translation.get_language()
    return language, timezone.get_current_timezone_name()


def _full_key(
    url: tuple[Any, ...], active: tuple[str | None, str], shape: tuple[str, ...], meta: Any
) -> tuple[Any, ...]:
    return (url, active, shape, tuple(meta.get(name) for name in shape))


def note_hit(request: HttpRequest, caller: Any, options: Any, key: str, page: Any) -> None:
    """Called by ``serve`` for a hit served from ``page`` under the first-level ``key`` of a
    request the middleware marked (``options``: the ``PageOptions``): it may become an early
    hit if the final response allows it (:func:`_record`)."""
    if not isinstance(page, Page) or page.slots or page.csrf_cookie:
        return
    if any(effect != "session" for effect in page.effects):
        return  # a CSP nonce, messages used (their storage may set a cookie), a language
    # The session accessed (a template read ``user``): for a request with no cookie the session
    # is empty and stays unsaved; SessionMiddleware adds ``Vary: Cookie``, in the record.
    if shadow.rate:
        return  # shadow mode checks hits
    needs: list[str] = []
    for source, name in page.absent:
        if source == "meta":
            needs.append(name)
        elif source not in ("cookie", "anonuser", "query", "rawquery", "method"):
            return  # a CSP nonce, or a condition this module does not know
    heads = {*needs, *(header_meta_name(h) for h in options.vary_on_headers)}
    target = _Target(options.store, key)
    note = _Note(caller, target, page, view_name(request), tuple(sorted(heads)), _active())
    setattr(request, _NOTE, note)


def _record(request: HttpRequest, response: HttpResponseBase) -> None:
    url = request.__dict__.get(_KEY)
    note = request.__dict__.get(_NOTE)
    if url is None or not isinstance(note, _Note):
        return
    match = getattr(request, "resolver_match", None)
    if note.caller is not None and (match is None or match.func is not note.caller):
        return  # a function around the cached view (or none resolved): it must run
    if not isinstance(response, HttpResponse) or response.cookies or response.streaming:
        return
    items = tuple(response.items())
    if any(name.lower() in _PER_RESPONSE for name, _ in items):
        return
    vary = set(vary_headers(response))
    if "*" in vary:
        return
    vary.discard("cookie")  # no eligible request has one
    shape = tuple(
        sorted({*middleware_reads(), *note.headers, *(header_meta_name(h) for h in vary)})
    )
    full = _full_key(url, note.active, shape, request.META)
    kind = type(response) if type(response).__module__ == "django.http.response" else None
    record = _Record(
        response.status_code, response.reason_phrase, items, response.content, note.view,
        kind or HttpResponse,
    )
    early = note.page.early
    if early is None:
        early = note.page.early = {}
    if len(early) >= PER_PAGE and full not in early:
        return
    early[full] = record
    with _lock:
        if len(_index) >= INDEX_SIZE:
            _index.clear()
            _shapes.clear()
        _shapes[url] = shape
        _index[full] = note.target


def _target(request: HttpRequest) -> tuple[tuple[Any, ...], _Target] | None:
    """The early key of ``request`` and the page recorded under it, if any (no I/O)."""
    url = _url_key(request)
    if url is None:
        return None
    request.__dict__[_KEY] = url
    if shadow.rate or get_settings().edge.publish is not None:
        return None  # a hit may be checked by a shadow render, or publish its page
    shape = _shapes.get(url)
    if shape is None:
        return None
    full = _full_key(url, _active(), shape, request.META)
    target = _index.get(full)
    return None if target is None else (full, target)


def _respond(full: tuple[Any, ...], hit: Outcome[Any] | None) -> HttpResponse | None:
    """The recorded response, if ``hit`` is the page it was recorded from."""
    page = hit.value if hit is not None else None
    record = page.early.get(full) if isinstance(page, Page) and page.early else None
    if hit is None or record is None:
        return None
    counters.incr("hits")
    if events.listening:
        events.emit(events.Event("page", record.view, "hit", tags=hit.tags))
    response = record.kind.__new__(record.kind)  # its own __init__ may want other arguments
    HttpResponse.__init__(response, record.body, status=record.status, reason=record.reason)
    del response["Content-Type"]  # the recorded headers say which, if any
    for name, value in record.headers:
        response.headers[name] = value
    return response


def _answer(request: HttpRequest) -> HttpResponse | None:
    """The early hit for ``request``, or ``None`` (the stack answers it)."""
    found = _target(request)
    if found is None:
        return None
    full, target = found
    return _respond(full, find(target.key, store=target.store, codec=PAGE_CODEC))


async def _aanswer(request: HttpRequest) -> HttpResponse | None:
    found = _target(request)
    if found is None:
        return None
    full, target = found
    return _respond(full, await afind(target.key, store=target.store, codec=PAGE_CODEC))


def _safely(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:  # never a 500 from freshcache: the stack answers instead
        logger.exception("freshcache: early hit failed; serving through the middleware")
        return None


class EarlyHitMiddleware:
    """Answer cookie-less ``GET``\\s of stored pages before the other middleware run.

    Put it first in ``MIDDLEWARE``; see the module's docstring for when it answers::

        MIDDLEWARE = [
            "freshcache.middleware.EarlyHitMiddleware",
            "django.middleware.security.SecurityMiddleware",
            ...
        ]

    Raises ``MiddlewareNotUsed`` (Django then leaves it out) when :func:`why_off` gives a
    reason.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        reason = why_off()
        if reason is None and not any(is_early(name) for name in django_settings.MIDDLEWARE):
            reason = "it is not in MIDDLEWARE (its checks need it there, first)"
        if reason is not None:
            raise MiddlewareNotUsed(f"freshcache early hits are off: {reason}")
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        early = _safely(_answer, request)
        if early is not None:
            return early
        response = self.get_response(request)
        _safely(_record, request, response)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        try:
            early = await _aanswer(request)  # a near cache's hit on the loop, else one lookup
        except Exception:
            logger.exception("freshcache: early hit failed; serving through the middleware")
            early = None
        if early is not None:
            return early
        response: HttpResponseBase = await self.get_response(request)
        _safely(_record, request, response)
        return response


def wanted(request: HttpRequest) -> bool:
    """Whether the middleware marked ``request`` as eligible (``serve`` then notes its hit)."""
    return _KEY in request.__dict__


def forget() -> None:
    """Drop every early key (tests; a reloaded URLconf needs nothing: keys hold raw paths)."""
    with _lock:
        _index.clear()
        _shapes.clear()


def on_setting_changed(**kwargs: Any) -> None:
    """Any setting changed (tests, ``override_settings``): the middleware and what they read
    may differ, so no record made before may answer (a new hit records again)."""
    forget()
