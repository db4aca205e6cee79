"""Pages: HEAD, conditional requests, nonces and tokens outside the body (issue 10 review)."""

from __future__ import annotations

import re

import pytest
from django.http import Http404, HttpRequest, HttpResponse
from django.middleware.csrf import _unmask_cipher_token, get_token
from django.template import engines
from django.test import AsyncClient, Client
from django.urls import path
from django.utils.http import http_date
from django.views.decorators.http import condition, etag

from freshcache.http import cache_page
from tests.http.conftest import state
from tests.http_app.views import _count

pytestmark = pytest.mark.urls(__name__)

LAST_MODIFIED = 1_700_000_000


@cache_page
def raw_method(request: HttpRequest) -> HttpResponse:
    # Same as `if request.method != "GET"`, read from META (WSGI environ) instead.
    if request.META["REQUEST_METHOD"] != "GET":
        return HttpResponse("GET only", status=405)
    return HttpResponse("hello")


@cache_page
@condition(etag_func=lambda request: '"v1"', last_modified_func=lambda request: None)
def conditional(request: HttpRequest) -> HttpResponse:
    _count("conditional")
    return HttpResponse("versioned")


@cache_page
@condition(
    last_modified_func=lambda request: __import__("datetime").datetime.fromtimestamp(
        LAST_MODIFIED, tz=__import__("datetime").timezone.utc
    )
)
def modified(request: HttpRequest) -> HttpResponse:
    return HttpResponse("dated body")


NONCE_JS = engines["django"].from_string(
    '<script nonce="{{ request.csp_nonce }}">'
    "var s = document.createElement('script'); s.nonce = '{{ request.csp_nonce|escapejs }}';"
    "</script>"
)


@cache_page
def nonce_js(request: HttpRequest) -> HttpResponse:
    _count("nonce_js")
    return HttpResponse(NONCE_JS.render({}, request))


@cache_page
def token_attribute(request: HttpRequest) -> HttpResponse:
    response = HttpResponse("<form>" + get_token(request) + "</form>")
    # e.g. for a middleware above that puts it in a header for an SPA
    response.csrf_for_header = get_token(request)  # type: ignore[attr-defined]
    return response


@cache_page(statuses=(200, 304))
@etag(lambda request: '"e1"')
def etagged(request: HttpRequest) -> HttpResponse:
    return HttpResponse("full body")


@cache_page
def per_user_missing(request: HttpRequest) -> HttpResponse:
    raise Http404("no such page")


urlpatterns = [
    path("per-user-missing/", per_user_missing),
    path("raw-method/", raw_method),
    path("conditional/", conditional),
    path("modified/", modified),
    path("nonce-js/", nonce_js),
    path("token-attr/", token_attribute),
    path("etagged/", etagged),
]


def test_head_after_get_for_a_view_reading_request_method_from_meta(client: Client) -> None:
    assert client.get("/raw-method/").status_code == 200
    head = client.head("/raw-method/")
    # Uncached, the view answers HEAD with 405.
    assert head.status_code == 405, (head.status_code, head.get("X-Freshcache"))


async def test_head_after_get_asgi(page_store: None) -> None:
    client = AsyncClient()
    assert (await client.get("/raw-method/")).status_code == 200
    head = await client.head("/raw-method/")
    assert head.status_code == 405, (head.status_code, head.get("X-Freshcache"))


def test_if_match_mismatch_is_412_on_hits_too(client: Client) -> None:
    render = client.get("/conditional/", headers={"If-Match": '"v0"'})
    assert render.status_code == 412  # the view's answer (nothing stored)
    assert state(client.get("/conditional/")) == "miss"
    hit = client.get("/conditional/", headers={"If-Match": '"v0"'})
    assert hit.status_code == 412, (hit.status_code, state(hit))


def test_if_modified_since_is_304_on_hits_too(client: Client) -> None:
    since = {"If-Modified-Since": http_date(LAST_MODIFIED + 10)}
    assert client.get("/modified/", headers=since).status_code == 304  # the view's answer
    assert state(client.get("/modified/")) == "miss"
    hit = client.get("/modified/", headers=since)
    assert hit.status_code == 304, (hit.status_code, state(hit))


def test_if_unmodified_since_is_412_on_hits_too(client: Client) -> None:
    before = {"If-Unmodified-Since": http_date(LAST_MODIFIED - 10)}
    assert client.get("/modified/", headers=before).status_code == 412  # the view's answer
    assert state(client.get("/modified/")) == "miss"
    hit = client.get("/modified/", headers=before)
    assert hit.status_code == 412, (hit.status_code, state(hit))


def test_nonce_in_a_transformed_form_is_not_stored(page_store: None, settings) -> None:  # type: ignore[no-untyped-def]
    from csp.constants import NONCE, SELF

    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"script-src": [SELF, NONCE]}}
    settings.MIDDLEWARE = ["csp.middleware.CSPMiddleware", *settings.MIDDLEWARE]
    first = Client().get("/nonce-js/")
    second = Client().get("/nonce-js/")
    header = re.search(r"'nonce-([^']*)'", second["Content-Security-Policy"]).group(1)
    escaped = header.replace("=", "\\u003D").replace("-", "\\u002D").encode()
    assert escaped in second.content or state(second) != "hit", (
        "the hit's script nonce (escapejs) is the previous visitor's",
        state(first),
        state(second),
        second.content,
        header,
    )


def test_csrf_token_in_a_response_attribute_is_not_stored(client: Client) -> None:
    alice, bob = Client(), Client()
    a = alice.get("/token-attr/")
    b = bob.get("/token-attr/")
    # A middleware above could turn the attribute into a header: never stored, each visitor
    # gets a token of their own secret.
    assert state(a) == state(b) == "bypass"
    assert "CSRF token" in a["X-Freshcache"]
    assert _unmask_cipher_token(b.csrf_for_header) != _unmask_cipher_token(a.csrf_for_header)


def test_a_304_is_never_stored_as_the_page(client: Client) -> None:
    first = client.get("/etagged/", headers={"If-None-Match": '"e1"'})
    assert first.status_code == 304
    plain = Client().get("/etagged/")  # no validator: must get the body
    assert plain.status_code == 200 and plain.content == b"full body", (
        plain.status_code,
        plain.get("X-Freshcache"),
    )


def test_a_view_that_raises_leaves_the_request_flags_as_they_were(page_store: None) -> None:
    # The render's bookkeeping clears the session's `accessed` flag for its duration; a view
    # that raises must get it back, or SessionMiddleware would drop Vary: Cookie.
    from django.contrib.sessions.backends.db import SessionStore
    from django.test import RequestFactory

    request = RequestFactory().get("/per-user-missing/")
    request.session = SessionStore()
    request.session.accessed = True
    with pytest.raises(Http404):
        per_user_missing(request)
    assert request.session.accessed is True
