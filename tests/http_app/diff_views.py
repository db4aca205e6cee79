"""Views for the differential test of issue 10 (``tests/http/test_differential.py``).

Each entry of ``VIEWS`` is one view wearing one of Django's decorators (or doing one thing to
its response), in four forms served by ``diff_urls``: sync and async, each bare (for
``CacheMiddleware``) and wrapped by ``cache_page`` outermost (the decorators run inside the
cached render, as they do under the middleware). ``Spec`` also says what a correct cache does
with it: stored or not, whether the view sets its own ETag, whether it learns a ``Vary``.
"""

from __future__ import annotations

import datetime
import functools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import django
from django.contrib.messages import get_messages
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import render
from django.utils.cache import _not_modified  # type: ignore[attr-defined]
from django.utils.decorators import method_decorator
from django.views.decorators.cache import cache_control, never_cache
from django.views.decorators.clickjacking import (
    xframe_options_deny,
    xframe_options_exempt,
    xframe_options_sameorigin,
)
from django.views.decorators.csrf import csrf_exempt, ensure_csrf_cookie, requires_csrf_token
from django.views.decorators.gzip import gzip_page
from django.views.decorators.http import condition, etag, last_modified, require_GET
from django.views.decorators.vary import vary_on_cookie, vary_on_headers
from django.views.generic import TemplateView

from freshcache.http import cache_page

DJANGO_6 = django.VERSION >= (6, 0)
LAST_MODIFIED = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
HTTP_LAST_MODIFIED = "Tue, 02 Jan 2024 03:04:05 GMT"

View = Callable[..., Any]
#: Renders per view name: a hit renders nothing.
RENDERS: Counter[str] = Counter()
#: ``NOT_MODIFIED["on"]``: every view answers the 304 Django makes of its 200 (``_not_modified``,
#: as ``ConditionalGetMiddleware`` does), keeping the attributes its decorators set: the
#: reference for a 304 freshcache answers in place of the view.
NOT_MODIFIED = {"on": False}


def as_not_modified(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    if not NOT_MODIFIED["on"]:
        return response
    new = _not_modified(request, response)
    for name, value in vars(response).items():
        if name == "xframe_options_exempt" or name.startswith("_csp"):
            setattr(new, name, value)
    return new


@dataclass(frozen=True)
class Spec:
    """One view of the matrix and what a correct page cache does with it."""

    name: str
    #: Builds the view from a body ``(request) -> response``; ``None`` for the async form means
    #: the decorators do not support async views (django-csp's, class-based views).
    body: Callable[[HttpRequest], HttpResponseBase] | None = None
    decorators: tuple[Callable[[View], View], ...] = ()
    async_ok: bool = True
    #: Must be stored (a hit on the second request), or never (``never_cache``).
    stored: bool = True
    #: The view sets its own ``ETag`` (freshcache must keep it).
    own_etag: bool = False
    #: The response's ``Vary`` names a header the key does not declare: the first request only
    #: teaches freshcache that (``bypass``), the second is the miss.
    learns_vary: bool = False
    #: Only meaningful on these stacks (``None``: every stack).
    stacks: frozenset[str] | None = None
    #: Reads ``If-None-Match``/``If-Modified-Since`` (a conditional request is never a hit).
    conditional: bool = False
    #: Reads ``request.method`` (a HEAD is never served a GET page).
    reads_method: bool = False
    #: Renders a CSP nonce; reads messages; reads the raw Host header.
    nonce: bool = False
    reads_messages: bool = False
    raw_host: bool = False
    needs_django6: bool = False
    views: dict[str, View] = field(default_factory=dict, compare=False)


PADDING = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 5  # > 200 bytes: gzip


def page(request: HttpRequest, text: str = "page", template: str = "page") -> HttpResponse:
    context = {"text": text, "padding": PADDING}
    return render(request, f"http_app/diff/{template}.html", context)


def _plain(request: HttpRequest) -> HttpResponse:
    return page(request)


def _lm_vary(request: HttpRequest) -> HttpResponse:
    response = page(request, "last-modified and vary")
    response["Last-Modified"] = HTTP_LAST_MODIFIED
    response["Vary"] = "Accept-Language"
    response["Cache-Control"] = "public, max-age=300"
    return response


def _host(request: HttpRequest) -> HttpResponse:
    return page(request, f"host={request.get_host()} uri={request.build_absolute_uri()}")


def _raw_host(request: HttpRequest) -> HttpResponse:
    return page(request, f"raw host={request.META['HTTP_HOST']}")


def _messages(request: HttpRequest) -> HttpResponse:
    # Iterating marks the storage used (the template's {% for %} only takes its len() when it
    # is empty): MessageMiddleware then stores what is left, deleting a messages cookie.
    shown = "; ".join(str(m) for m in get_messages(request)) or "no messages"
    return page(request, shown, template="messages")


def _reason(request: HttpRequest) -> HttpResponse:
    response = page(request, "custom reason")
    response.reason_phrase = "Perfectly Fine"
    return response


def _json(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"answer": 42, "items": ["a", "b"]})


def _raw_set_cookie(request: HttpRequest) -> HttpResponse:
    response = page(request, "raw set-cookie header")
    response["Set-Cookie"] = "flavour=vanilla; Path=/"
    return response


def _template(name: str) -> Callable[[HttpRequest], HttpResponse]:
    def body(request: HttpRequest) -> HttpResponse:
        return page(request, name, template=name)

    return body


def _etag(request: HttpRequest) -> str:
    return '"diff-v1"'


def _last_modified(request: HttpRequest) -> datetime.datetime:
    return LAST_MODIFIED


def _csp_decorators() -> dict[str, tuple[Callable[[View], View], ...]]:
    from csp.constants import NONCE, SELF
    from csp.decorators import csp_exempt, csp_replace, csp_update

    found: dict[str, tuple[Callable[[View], View], ...]] = {
        "csp_exempt": (csp_exempt(),),
        "csp_update": (csp_update({"img-src": [SELF, "data:"]}),),
        "csp_replace": (csp_replace({"script-src": [SELF, NONCE, "cdn.example.com"]}),),
    }
    if DJANGO_6:
        from django.utils.csp import CSP
        from django.views.decorators.csp import csp_override

        policy = {"default-src": [CSP.SELF], "img-src": [CSP.SELF, "data:"]}
        found["csp_override"] = (csp_override(policy),)
    return found


CSP_DECORATORS = _csp_decorators()
DJCSP = frozenset({"csp-django-csp"})
DJANGO_CSP = frozenset({"csp-django"})

SPECS = [
    Spec("plain", _plain),
    Spec("cache_control", _plain, (cache_control(public=True, max_age=300),)),
    Spec("never_cache", _plain, (never_cache,), stored=False),
    Spec("vary_on_headers", _plain, (vary_on_headers("X-Variant"),), learns_vary=True),
    Spec("vary_on_cookie", _plain, (vary_on_cookie,), learns_vary=True),
    Spec("xframe_exempt", _plain, (xframe_options_exempt,)),
    Spec("xframe_deny", _plain, (xframe_options_deny,)),
    Spec("xframe_sameorigin", _plain, (xframe_options_sameorigin,)),
    Spec("csrf_exempt", _template("csrf"), (csrf_exempt,)),
    Spec("ensure_csrf_cookie", _plain, (ensure_csrf_cookie,)),
    Spec("requires_csrf_token", _template("csrf"), (requires_csrf_token,)),
    Spec(
        "condition",
        _plain,
        (condition(etag_func=_etag, last_modified_func=_last_modified),),
        own_etag=True,
        conditional=True,
        reads_method=True,
    ),
    Spec("etag", _plain, (etag(_etag),), own_etag=True, conditional=True, reads_method=True),
    Spec(
        "last_modified",
        _plain,
        (last_modified(_last_modified),),
        conditional=True,
        reads_method=True,
    ),
    Spec("gzip_page", _plain, (gzip_page,), learns_vary=True),
    Spec("require_GET", _plain, (require_GET,), reads_method=True),
    Spec("csp_override", _plain, needs_django6=True, stacks=DJANGO_CSP),
    Spec("csp_exempt", _plain, async_ok=False, stacks=DJCSP),
    Spec("csp_update", _template("nonce_djcsp"), async_ok=False, stacks=DJCSP, nonce=True),
    Spec("csp_replace", _template("nonce_djcsp"), async_ok=False, stacks=DJCSP, nonce=True),
    Spec("last_modified_vary", _lm_vary, learns_vary=True),
    Spec("user", _template("user")),
    Spec("messages", _messages, reads_messages=True),
    Spec("csrf_token", _template("csrf")),
    Spec(
        "nonce_django", _template("nonce_django"), nonce=True, needs_django6=True, stacks=DJANGO_CSP
    ),
    Spec("nonce_django_csp", _template("nonce_djcsp"), nonce=True, stacks=DJCSP),
    Spec("template_response", None, async_ok=False, reads_method=True),  # View.dispatch
    Spec("host", _host),
    Spec("raw_host", _raw_host, raw_host=True),
    Spec("reason", _reason),
    Spec("json", _json),
    Spec("raw_set_cookie", _raw_set_cookie, stored=False),  # it sets a cookie
]


class DiffTemplateView(TemplateView):
    template_name = "http_app/diff/template_view.html"

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        return as_not_modified(request, super().dispatch(request, *args, **kwargs))

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        RENDERS["template_response"] += 1
        return {**super().get_context_data(**kwargs), "padding": PADDING}


@method_decorator(cache_page, name="dispatch")
class CachedTemplateView(DiffTemplateView):
    pass


def _build(spec: Spec, is_async: bool) -> View:
    body = spec.body
    assert body is not None
    if is_async:

        async def view(request: HttpRequest) -> HttpResponseBase:
            RENDERS[spec.name] += 1
            return body(request)
    else:

        def view(request: HttpRequest) -> HttpResponseBase:  # type: ignore[misc]
            RENDERS[spec.name] += 1
            return body(request)

    view.__name__ = view.__qualname__ = ("async_" if is_async else "") + spec.name
    decorators = spec.decorators + CSP_DECORATORS.get(spec.name, ())
    for decorator in reversed(decorators):
        view = decorator(view)
    decorated = view
    if is_async:

        @functools.wraps(decorated)
        async def outer(request: HttpRequest) -> HttpResponseBase:
            return as_not_modified(request, await decorated(request))

        return outer

    @functools.wraps(decorated)
    def outer_sync(request: HttpRequest) -> HttpResponseBase:
        return as_not_modified(request, decorated(request))

    return outer_sync


def _fill(spec: Spec) -> None:
    if spec.name == "template_response":
        spec.views.update({"m": DiffTemplateView.as_view(), "d": CachedTemplateView.as_view()})
        return
    if spec.needs_django6 and not DJANGO_6:
        return
    for prefix, is_async in (("", False), ("a", True)):
        if is_async and not spec.async_ok:
            continue
        bare = _build(spec, is_async)
        spec.views["m" + prefix] = bare
        spec.views["d" + prefix] = cache_page(_build(spec, is_async))


if django.VERSION < (5, 0):
    # Django's view decorators take async views from 5.0 on: on 4.2 the async forms of the
    # decorated views fail without any cache, so only their sync forms are compared.
    SPECS = [replace(s, async_ok=False) if s.decorators else s for s in SPECS]

for _spec in SPECS:
    _fill(_spec)

BY_NAME = {spec.name: spec for spec in SPECS}
