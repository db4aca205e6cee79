"""Serve one request through the page cache: the logic shared by ``cache_page`` and the middleware.

For a GET or HEAD request that passes the request checks (no ``Authorization``, no body, no
session unless the view varies per user, a valid host, a bounded query string):

1. ``fetch(key1, render)`` where ``key1`` covers the URL and the declared varying inputs.
2. The render runs under a :class:`~freshcache.http.guard.Guard` (a ``TemplateResponse`` is
   rendered there too, not after the view returns); the response is checked (status, cookies,
   ``Cache-Control``, ``Vary``), its CSRF tokens and placeholders are cut out, and the resulting
   :class:`~freshcache.http.page.Page` is what the core stores — or the scope is marked
   uncacheable and only the live response is served.
3. If the response varies on headers the key did not cover (``Vary`` set by the view), a small
   :class:`~freshcache.http.page.VaryMarker` naming them is stored under ``key1`` instead, and the
   next request looks the page up under ``key2 = key1 + those headers' values``. Declaring
   ``vary_on_headers`` up front saves that second lookup (one store round trip per hit).
4. A hit is served only if the page's recorded conditions still hold (what the render found
   absent is still absent), with its slots filled for this request and a 304 when the client's
   ``If-None-Match`` matches.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from random import random
from typing import Any, TypeGuard

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.template.response import SimpleTemplateResponse
from django.utils.functional import SimpleLazyObject, empty

from .. import events
from ..conf import get_settings
from ..core import Outcome, afetch, fetch
from ..edge import response as edge
from ..edge.publish import publish
from ..outcome import PAGE_ATTRIBUTE as PAGE_OUTCOME
from ..outcome import active as outcome_collecting
from ..scope import add_tags, mark_uncacheable
from ..tags import Taggable, tags_for
from . import carry, early, shadow
from .guard import Guard, _keyed_meta, conditions_violated, guarded, reason_text
from .keys import QueryKey, header_meta_name, normalized_query, page_key, url_tag
from .names import view_name
from .page import (
    PAGE_CODEC,
    Page,
    VaryMarker,
    covering_tags,
    etag_for,
    fill_markers,
    not_modified,
    page_from_response,
    response_from_page,
    vary_headers,
)

__all__ = ["PageOptions", "aserve", "keys_for", "serve"]

logger = logging.getLogger("freshcache.http")
CODEC = PAGE_CODEC
_SAFE = ("GET", "HEAD")
#: Methods a bypass reason names (RFC 9110 section 9, and PATCH from RFC 5789); others: "other".
_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})


@dataclass(frozen=True)
class PageOptions:
    """How one view (or the whole site) is cached. See ``cache_page`` for the meaning."""

    vary_on_user: bool = False
    vary_on_headers: tuple[str, ...] = ()
    query_params: frozenset[str] | None = None
    tags: tuple[Any, ...] = ()
    tag_function: Callable[..., Iterable[Taggable]] | None = None
    store: str | None = None
    statuses: tuple[int, ...] | None = None
    namespace: str = "page"


@dataclass
class _Plan:
    request: HttpRequest
    options: PageOptions
    query: QueryKey
    host: str
    user: str | None
    #: The declared tags (``tags=``, its function's); the URL's tag is added on a miss only
    #: (``extra_tags()``): a hit's stored tags already hold it.
    declared_tags: set[str] = field(default_factory=set)
    response: HttpResponseBase | None = None

    def extra_tags(self) -> set[str]:
        """The tags a render of this request depends on besides what it reads."""
        return {url_tag(self.request.path), *self.declared_tags}

    def key(self, vary: tuple[str, ...] = ()) -> str:
        meta = self.request.META
        names = sorted({h.lower() for h in (*self.options.vary_on_headers, *vary)})
        headers = [(h, meta.get(header_meta_name(h))) for h in names]
        return page_key(
            self.request,
            self.query,
            host=self.host,
            headers=headers,
            user=self.user,
            namespace=self.options.namespace,
        )

    def guard(self, vary: tuple[str, ...], first: bool) -> Guard:
        declared = {*self.options.vary_on_headers, *vary}
        allow = self.options.query_params
        raw_query = self.request.META.get("QUERY_STRING", "")
        return Guard(
            self.request,
            query_all=allow is None,
            query_keyed=allow,
            raw_query_ok=not self.query.unkeyed and raw_query == self.query.canonical,
            unkeyed_params=self.query.unkeyed,
            meta_keyed=_keyed_meta(frozenset(header_meta_name(h) for h in declared)),
            user_keyed=self.options.vary_on_user,
            defer_headers=first,
        )

    def statuses(self) -> tuple[int, ...]:
        return self.options.statuses or get_settings().cache_statuses

    def conclude(
        self, response: HttpResponseBase, guard: Guard, vary: tuple[str, ...], first: bool
    ) -> Page | VaryMarker | None:
        """Turn the rendered response into what is stored (``None``: nothing is)."""
        self.response = response
        if self.request.method == "HEAD":
            # A HEAD render may omit the body; GET and HEAD share entries, so only GET stores.
            mark_uncacheable("HEAD renders are not stored")
            return None
        try:
            result = page_from_response(self.request, response, guard, self.statuses())
        except Exception as exc:  # never a 500 from freshcache
            logger.exception("freshcache: could not prepare a page for storing")
            result = f"internal error: {type(exc).__name__}"
        if guard.markers and isinstance(response, HttpResponse):
            # The live response still holds this render's markers: fill them for this request.
            response.content = fill_markers(self.request, response.content, guard)
        if isinstance(result, str):
            mark_uncacheable(result)
            return None
        if guard.refused:
            return None
        covered = {h.lower() for h in (*self.options.vary_on_headers, *vary)}
        undeclared = set(vary_headers(response)) - covered
        if result.csrf_cookie and settings.CSRF_COOKIE_NAME in response.cookies:
            # Vary: Cookie added by the CSRF machinery inside the view; every other cookie read
            # is tracked by the guard, so the key need not include the Cookie header.
            undeclared.discard("cookie")
        # Headers the render read that the key did not cover are fine only if the response
        # says it varies on them: they go into the second-level key.
        unkeyed_reads = {
            name for name in guard.deferred
            if name not in {header_meta_name(h) for h in undeclared}
        }
        if unkeyed_reads:
            first_read = sorted(unkeyed_reads)[0]
            why = f"read header {first_read!r}, which is not part of the key"
            mark_uncacheable(reason_text(why))
            return None
        if undeclared:
            if first:
                return VaryMarker(tuple(sorted(undeclared)))
            mark_uncacheable("the Vary headers changed: " + ", ".join(sorted(undeclared)))
            return None
        return result


def _prepare(
    request: HttpRequest, options: PageOptions, args: tuple, kwargs: dict, who: Any = None
) -> _Plan | str:
    """Decide whether ``request`` may use the cache at all, and how its key is built.

    ``who``: the user, already resolved (async views); by default ``request.user``.
    """
    if events.listening:
        events.forget()  # an event held before this page began is not this page's
    if not get_settings().enabled:
        return "disabled"  # the render runs as without freshcache: no guard, no proxies
    if request.method not in _SAFE:
        # Named only when standard: any word is a method to Django, and reasons become metric
        # labels and journal counters (a visitor must not be able to mint them).
        method = request.method if request.method in _METHODS else "other"
        return f"method {method}"
    meta = request.META
    if "HTTP_AUTHORIZATION" in meta:
        return "request has Authorization"
    if meta.get("CONTENT_LENGTH") not in (None, "", "0") or "HTTP_TRANSFER_ENCODING" in meta:
        return "request has a body"
    if settings.SESSION_COOKIE_NAME in request.COOKIES and not options.vary_on_user:
        return "request has a session"
    try:
        host = request.get_host()
    except DisallowedHost:
        return "host not allowed"
    query = normalized_query(request, options.query_params)
    if query.bypass:
        return query.bypass
    user = None
    if options.vary_on_user:
        who = getattr(request, "user", None) if who is None else who
        user = f"user:{who.pk}" if who is not None and who.is_authenticated else "anonymous"
    plan = _Plan(request, options, query, host, user)
    if options.tags:
        plan.declared_tags |= tags_for(options.tags)
    if options.tag_function is not None:
        plan.declared_tags |= tags_for(options.tag_function(request, *args, **kwargs))
    return plan


def keys_for(
    request: HttpRequest, options: PageOptions, args: tuple = (), kwargs: dict | None = None
) -> Callable[[tuple[str, ...]], str] | str:
    """How :func:`serve` keys ``request``: a function of the Vary headers a stored marker names
    (``()`` for the first-level key) returning the page key, or why the request would bypass
    the cache (``manage.py freshcache inspect``)."""
    plan = _prepare(request, options, args, kwargs or {})
    return plan if isinstance(plan, str) else plan.key


def _unrendered(response: HttpResponseBase) -> TypeGuard[SimpleTemplateResponse]:
    """True for a ``TemplateResponse`` not rendered yet (generic class-based views return one).

    Django renders it after the view returns, outside the page's scope and guard: its
    template's reads (the database, the request) would escape both, and the page could not be
    stored. So the page's computation renders it, inside them. A ``process_template_response``
    middleware then gets a rendered response: changing its template or context has no effect,
    as on a hit, where it is not called at all (see docs/limits.md).
    """
    return isinstance(response, SimpleTemplateResponse) and not response.is_rendered


def _header_enabled() -> bool:
    value = get_settings().header
    return settings.DEBUG if value is None else value


def _own_etag(page: Page) -> bool:
    return any(name.lower() == "etag" for name, _ in page.headers)


def _annotate(
    request: HttpRequest,
    response: HttpResponseBase,
    state: str,
    reason: str | None = None,
    page: Page | None = None,
    tags: frozenset[str] = frozenset(),
    options: PageOptions | None = None,
) -> HttpResponseBase:
    if page is not None:
        if not response.has_header("Cache-Control") and get_settings().browser_cache_control:
            response["Cache-Control"] = get_settings().browser_cache_control
            # Ours, for browsers: an enclosing CacheMiddleware must not read it as the view's.
            response._freshcache_cache_control = True  # type: ignore[attr-defined]
        labelled = get_settings().edge.enabled and not _own_etag(page)
        if (labelled or not response.has_header("ETag")) and response.status_code != 304:
            etag = etag_for(request, page)
            if etag is not None:
                # With edge keys the ETag covers the tags too (docs/edge.md, "Revalidation").
                response["ETag"] = covering_tags(etag, tags) if labelled else etag
        # The client's copy is current: the same 304 on a hit and on a miss.
        response = not_modified(request, response, page)
    if events.listening:
        # Kept on the request for freshcache.page_outcome() (outcome.py) while the request is
        # inside outcome.collecting (OutcomeMiddleware, the toolbar panel).
        outcome_event = events.settle("page", view_name(request), state, reason)
        if outcome_collecting():
            setattr(request, PAGE_OUTCOME, outcome_event)
    header = _header_enabled()
    if header:
        response["X-Freshcache"] = state + (f"; reason={reason_text(reason)}" if reason else "")
    if get_settings().edge.enabled:  # surrogate keys, or uncacheable for the edge (docs/edge.md)
        edge.annotate(request, response, page, tags, options, header)
    return response


def _served_hit(
    request: HttpRequest, outcome: Outcome[Any], options: PageOptions
) -> HttpResponseBase | str:
    """The response for a hit, or why this request may not be served the stored page."""
    page = outcome.value
    assert isinstance(page, Page)
    violated = conditions_violated(request, page.absent)
    if violated:
        return violated
    try:
        response = response_from_page(request, page)
    except Exception as exc:
        logger.exception("freshcache: could not serve a stored page")
        return f"internal error: {type(exc).__name__}"
    return _annotate(request, response, "hit", page=page, tags=outcome.tags, options=options)


def _served_miss(plan: _Plan, outcome: Outcome[Any]) -> HttpResponseBase:
    response = plan.response
    assert response is not None
    if outcome.stored and isinstance(outcome.value, Page):
        return _annotate(
            plan.request,
            response,
            "miss",
            page=outcome.value,
            tags=outcome.tags,
            options=plan.options,
        )
    if outcome.stored and isinstance(outcome.value, VaryMarker):
        why = "learnt that it varies on " + ", ".join(outcome.value.headers)
        return _annotate(plan.request, response, "bypass", why)
    return _annotate(plan.request, response, "bypass", outcome.reason or "not stored")


def serve(
    request: HttpRequest,
    render: Callable[[], HttpResponseBase],
    options: PageOptions,
    args: tuple = (),
    kwargs: dict | None = None,
    *,
    caller: Any = None,
) -> HttpResponseBase:
    """Serve ``request`` from the page cache, calling ``render()`` on a miss.

    ``caller``: the view function calling this (``cache_page``'s), ``None`` for the middleware;
    a hit may be recorded for early hits only if the URL resolved to it (``early.py``).
    """
    try:
        plan = _prepare(request, options, args, kwargs or {})
    except Exception as exc:
        logger.exception("freshcache: could not key this request")
        plan = f"internal error: {type(exc).__name__}"
    if isinstance(plan, str):
        return _annotate(request, render(), "bypass", plan)

    def compute(vary: tuple[str, ...], first: bool) -> Callable[[], Page | VaryMarker | None]:
        def run() -> Page | VaryMarker | None:
            add_tags(plan.extra_tags())
            guard = plan.guard(vary, first)
            before = carry.snapshot(request)
            try:
                with guarded(request, guard):
                    response = render()
                    if _unrendered(response):
                        response = response.render()  # a post-render callback may replace it
            finally:  # also puts back the flags the snapshot cleared, if the view raised
                guard.effects = carry.effects_since(request, before)
            return plan.conclude(response, guard, vary, first)

        return run

    first = plan.key()
    outcome = fetch(first, compute((), True), store=options.store, codec=CODEC, kind="page")
    vary: tuple[str, ...] = ()
    if outcome.hit and isinstance(outcome.value, VaryMarker):
        vary = outcome.value.headers
        outcome = fetch(
            plan.key(vary), compute(vary, False), store=options.store, codec=CODEC, kind="page"
        )
    if (outcome.stored or outcome.hit) and get_settings().edge.publish is not None:
        publish(plan.request, outcome, plan.options, vary, plan.key(vary))  # docs/edge.md
    if outcome.hit:
        served = (
            _served_hit(request, outcome, options)
            if isinstance(outcome.value, Page)
            else "bad entry"
        )
        if isinstance(served, str):
            return _annotate(request, render(), "bypass", served)
        if shadow.rate and random() < shadow.rate:  # docs/observability.md, "Shadow mode"
            shadow.schedule(request, render, plan, vary, outcome, served)
        elif early.wanted(request):  # a learned Vary: the page's own key, its headers joined
            key = plan.key(vary) if vary else first
            early.note_hit(request, caller, options, key, outcome.value)
        return served
    return _served_miss(plan, outcome)


async def _auser(request: HttpRequest) -> Any:
    """The user of ``request``, resolved without blocking the event loop (``None``: no auth).

    ``request.user`` is lazy: evaluating it in async code loads the session and the user from
    the database and raises ``SynchronousOnlyOperation``. Both ``request.auser()`` and the lazy
    ``request.user`` are left resolved, as ``serve`` leaves ``request.user``: the view's own read
    of either then reads no session inside the guarded render (the user is in the key, the
    session is not).
    """
    user = getattr(request, "user", None)
    auser = getattr(request, "auser", None)
    if auser is not None:  # Django 5.0+: the async session and user queries
        resolved = await auser()
        if isinstance(user, SimpleLazyObject) and user._wrapped is empty:
            user._wrapped = resolved
        return resolved
    if user is None:
        return None

    def resolve() -> Any:
        bool(user.is_authenticated)  # evaluates the lazy object
        return user

    return await sync_to_async(resolve)()


async def aserve(
    request: HttpRequest,
    render: Callable[[], Awaitable[HttpResponseBase]],
    options: PageOptions,
    args: tuple = (),
    kwargs: dict | None = None,
    *,
    caller: Any = None,
) -> HttpResponseBase:
    """The ``async`` form of :func:`serve`, for ``async def`` views and async middleware."""
    try:
        who = None
        if options.vary_on_user and request.method in _SAFE:
            who = await _auser(request)
        plan = _prepare(request, options, args, kwargs or {}, who)
    except Exception as exc:
        logger.exception("freshcache: could not key this request")
        plan = f"internal error: {type(exc).__name__}"
    if isinstance(plan, str):
        return _annotate(request, await render(), "bypass", plan)

    def compute(vary: tuple[str, ...], first: bool) -> Callable[[], Awaitable[Any]]:
        async def run() -> Page | VaryMarker | None:
            add_tags(plan.extra_tags())
            guard = plan.guard(vary, first)
            before = carry.snapshot(request)
            try:
                with guarded(request, guard):
                    response = await render()
                    if _unrendered(response):
                        # As Django's async handler does: templates may query the database.
                        response = await sync_to_async(response.render)()
            finally:  # also puts back the flags the snapshot cleared, if the view raised
                guard.effects = carry.effects_since(request, before)
            return plan.conclude(response, guard, vary, first)

        return run

    first = plan.key()
    outcome = await afetch(
        first, compute((), True), store=options.store, codec=CODEC, kind="page"
    )
    vary: tuple[str, ...] = ()
    if outcome.hit and isinstance(outcome.value, VaryMarker):
        vary = outcome.value.headers
        outcome = await afetch(
            plan.key(vary), compute(vary, False), store=options.store, codec=CODEC, kind="page"
        )
    if (outcome.stored or outcome.hit) and get_settings().edge.publish is not None:
        await sync_to_async(publish)(plan.request, outcome, plan.options, vary, plan.key(vary))
    if outcome.hit:
        served = (
            _served_hit(request, outcome, options)
            if isinstance(outcome.value, Page)
            else "bad entry"
        )
        if isinstance(served, str):
            return _annotate(request, await render(), "bypass", served)
        if shadow.rate and random() < shadow.rate:
            shadow.schedule(request, render, plan, vary, outcome, served, is_async=True)
        elif early.wanted(request):  # a learned Vary: the page's own key, its headers joined
            key = plan.key(vary) if vary else first
            early.note_hit(request, caller, options, key, outcome.value)
        return served
    return _served_miss(plan, outcome)
