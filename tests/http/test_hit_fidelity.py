"""Issue 10: a hit is the response the view would have given. One test per public bug report
(each failed before the fix), plus the neighbours of each that the same kind covers."""

from __future__ import annotations

import re

import django
import pytest
from django.test import Client, override_settings

from tests.http.conftest import state
from tests.http_app.views import RENDERS

pytestmark = pytest.mark.urls("tests.http_app.fidelity_views")


def _with(settings, *middleware: str, first: bool = False) -> None:  # type: ignore[no-untyped-def]
    stack = list(settings.MIDDLEWARE)
    settings.MIDDLEWARE = [*middleware, *stack] if first else [*stack, *middleware]


# -- 1. the key covers every header a host, port or scheme is derived from ------------------------


@override_settings(USE_X_FORWARDED_HOST=True)
def test_raw_host_header_cannot_poison_a_forwarded_host_page(client: Client) -> None:
    forwarded = {"X-Forwarded-Host": "www.example.com"}
    first = client.get("/host/", headers=forwarded, HTTP_HOST="evil.example")
    assert b"//evil.example/" in first.content
    second = client.get("/host/", headers=forwarded, HTTP_HOST="internal")
    assert b"evil.example" not in second.content
    assert b"//internal/" in second.content
    # Each raw Host is a page of its own, and is served to itself.
    again = client.get("/host/", headers=forwarded, HTTP_HOST="internal")
    assert state(again) == "hit" and b"//internal/" in again.content


@override_settings(USE_X_FORWARDED_PORT=True)
def test_forwarded_port_is_keyed(client: Client) -> None:
    a = client.get("/port/", headers={"X-Forwarded-Port": "8443"})
    b = client.get("/port/", headers={"X-Forwarded-Port": "9000"})
    assert b"port=8443" in a.content
    assert b"port=9000" in b.content


# -- 2. response attributes ---------------------------------------------------------------------


def test_xframe_exemption_survives_a_hit(client: Client, settings) -> None:  # type: ignore[no-untyped-def]
    _with(settings, "django.middleware.clickjacking.XFrameOptionsMiddleware", first=True)
    miss = client.get("/embed/")
    hit = client.get("/embed/")
    assert (state(miss), state(hit)) == ("miss", "hit")
    assert not miss.has_header("X-Frame-Options")
    assert not hit.has_header("X-Frame-Options")


def test_reason_phrase_class_and_attributes_are_carried(client: Client) -> None:
    miss = client.get("/reason/")
    hit = client.get("/reason/")
    assert state(hit) == "hit"
    for response in (miss, hit):
        assert response.reason_phrase == "Fine Thanks"
        assert type(response).__name__ == "JsonResponse"
        assert response.flavour == {"kind": ("sweet", "sour"), "tags": {"a"}}
        assert response.json() == {"ok": True}


def test_an_attribute_that_is_not_data_makes_the_response_uncacheable(client: Client) -> None:
    response = client.get("/opaque/")
    assert state(response) == "bypass"
    assert "response attribute 'thing'" in response["X-Freshcache"]
    assert state(client.get("/opaque/")) == "bypass"


# -- 3. what the render did to the request: session, messages, language ------------------------


def test_vary_cookie_from_the_session_survives_a_hit(client: Client) -> None:
    miss = client.get("/greets/")
    hit = client.get("/greets/")
    assert (state(miss), state(hit)) == ("miss", "hit")
    for response in (miss, hit):
        assert "Cookie" in response["Vary"]
    assert miss["Cache-Control"] == hit["Cache-Control"]
    assert "max-age=300" in hit["Cache-Control"] and "public" in hit["Cache-Control"]


@override_settings(MESSAGE_STORAGE="django.contrib.messages.storage.cookie.CookieStorage")
def test_messages_cookie_is_cleared_on_hits_as_on_renders(client: Client) -> None:
    miss = client.get("/messages/")
    hit = Client().get("/messages/")  # the first client now holds the cleared cookie
    assert state(hit) == "hit"
    # The render iterated the (empty) messages: MessageMiddleware clears their cookie.
    assert miss.cookies["messages"]["max-age"] == 0
    assert hit.cookies["messages"].output() == miss.cookies["messages"].output()


def test_language_activated_by_the_view_is_activated_on_hits(client: Client, settings) -> None:  # type: ignore[no-untyped-def]
    _with(settings, "django.middleware.locale.LocaleMiddleware")
    miss = client.get("/german/")
    hit = client.get("/german/")
    assert state(hit) == "hit"
    assert miss["Content-Language"] == hit["Content-Language"] == "de"


# -- 4. the documented class-based form ---------------------------------------------------------


def test_method_decorated_template_view_is_cached(client: Client) -> None:
    assert state(client.get("/about/")) == "miss"
    hit = client.get("/about/")
    assert state(hit) == "hit"
    assert b"Hello stranger" in hit.content


# -- 5. a raw Set-Cookie header ----------------------------------------------------------------


def test_raw_set_cookie_header_is_never_stored(client: Client) -> None:
    first = client.get("/raw-cookie/")
    second = Client().get("/raw-cookie/")
    assert state(first) == state(second) == "bypass"
    assert "raw Set-Cookie" in first["X-Freshcache"]
    assert second["Set-Cookie"] == "visitor=v1; Path=/"
    assert RENDERS["raw_cookie"] == 2


# -- 6. 304s repeat what the 200 says ------------------------------------------------------------


def test_not_modified_repeats_the_pages_headers(client: Client) -> None:
    miss = client.get("/dated/")
    etag = miss["ETag"]
    for expected in ("hit", "hit"):
        not_modified = client.get("/dated/", headers={"If-None-Match": etag})
        assert not_modified.status_code == 304
        assert state(not_modified) == expected
        for header in ("Cache-Control", "Vary", "Last-Modified", "ETag"):
            assert not_modified[header] == miss[header], header
    assert miss["Cache-Control"] == "public, max-age=300"


def test_a_miss_answers_a_matching_validator_with_the_same_304(client: Client) -> None:
    etag = client.get("/dated/")["ETag"]
    from freshcache import store

    store().clear()  # invalidated, same content: the render's ETag is the same
    again = client.get("/dated/", headers={"If-None-Match": etag})
    assert (state(again), again.status_code) == ("miss", 304)
    assert again["Cache-Control"] == "public, max-age=300"


def test_the_views_own_etag_is_kept(client: Client) -> None:
    miss = client.get("/own-etag/")
    hit = client.get("/own-etag/")
    assert miss["ETag"] == hit["ETag"] == '"v7"'
    assert client.get("/own-etag/", headers={"If-None-Match": '"v7"'}).status_code == 304


# -- HEAD and a view that looks at the method ---------------------------------------------------


def test_head_of_a_get_only_view_is_405_after_a_stored_get(client: Client) -> None:
    assert client.get("/get-only/").status_code == 200
    assert state(client.get("/get-only/")) == "hit"
    head = client.head("/get-only/")
    assert head.status_code == 405
    assert state(head) == "bypass"


# -- 7. CSP nonces -----------------------------------------------------------------------------

_NONCE_IN_BODY = re.compile(rb'nonce="([^"]*)"')
_NONCE_IN_HEADER = re.compile(r"'nonce-([^']*)'")


def _nonces(response) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    body = _NONCE_IN_BODY.search(response.content)
    header = _NONCE_IN_HEADER.search(response["Content-Security-Policy"])
    assert body and header, (response.content, response.get("Content-Security-Policy"))
    return body.group(1).decode(), header.group(1)


def _check_nonces_per_visitor() -> None:
    seen = []
    for expected in ("miss", "hit", "hit"):
        response = Client().get("/nonce/")
        assert state(response) == expected
        body, header = _nonces(response)
        assert body == header and body
        seen.append(body)
    assert len(set(seen)) == 3, "every visitor has a nonce of their own"
    assert RENDERS["nonce_page"] == 1
    assert "ETag" not in Client().get("/nonce/"), "a 304 would keep another response's nonce"


def test_django_csp_nonce_is_per_request(page_store: None, settings) -> None:  # type: ignore[no-untyped-def]
    from csp.constants import NONCE, SELF

    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"script-src": [SELF, NONCE]}}
    _with(settings, "csp.middleware.CSPMiddleware", first=True)
    _check_nonces_per_visitor()


@pytest.mark.skipif(django.VERSION < (6, 0), reason="Django's own CSP arrived in 6.0")
def test_django_builtin_csp_nonce_is_per_request(page_store: None, settings) -> None:  # type: ignore[no-untyped-def]
    from django.utils.csp import CSP  # type: ignore[import-not-found]

    # The configuration docs/pages.md shows.
    settings.SECURE_CSP = {"script-src": [CSP.SELF, CSP.NONCE]}
    _with(settings, "django.middleware.csp.ContentSecurityPolicyMiddleware", first=True)
    templates = [dict(t, OPTIONS=dict(t["OPTIONS"])) for t in settings.TEMPLATES]
    processors = templates[0]["OPTIONS"]["context_processors"]
    templates[0]["OPTIONS"]["context_processors"] = [
        *processors,
        "django.template.context_processors.csp",
    ]
    settings.TEMPLATES = templates
    _check_nonces_per_visitor()
