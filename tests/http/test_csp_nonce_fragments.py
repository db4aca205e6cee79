"""CSP nonces in fragments and under a view's own ETag (issue 10 review)."""

from __future__ import annotations

import re

import django
import pytest
from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.test import Client
from django.urls import path

from freshcache.http import cache_page
from tests.http.conftest import state

pytestmark = pytest.mark.urls(__name__)

# Django 6.0's documented pattern for libraries: a nonce only if something generated it already.
LIB_SOURCE = (
    "{% load freshcache %}"
    '{% if request.GET.early %}<script nonce="{{ csp_nonce }}">app</script>{% endif %}'
    "{% cachefresh 'lib' %}<script{% if csp_nonce %} nonce=\"{{ csp_nonce }}\"{% endif %}>lib"
    "</script>{% endcachefresh %}"
)


def lib(request: HttpRequest) -> HttpResponse:
    # Compiled per request: the engine must be the one with the CSP context processor.
    return HttpResponse(engines["django"].from_string(LIB_SOURCE).render({}, request))


NONCE_PAGE = engines["django"].from_string('<script nonce="{{ request.csp_nonce }}">x</script>')


@cache_page
def nonce_with_etag(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(NONCE_PAGE.render({}, request))
    response["ETag"] = '"release-42"'  # the view's own version tag
    return response


urlpatterns = [path("lib/", lib), path("nonce-etag/", nonce_with_etag)]


def _builtin_csp(settings) -> None:  # type: ignore[no-untyped-def]
    from django.utils.csp import CSP  # type: ignore[import-not-found]

    settings.SECURE_CSP = {"script-src": [CSP.SELF, CSP.NONCE]}
    settings.MIDDLEWARE = [
        "django.middleware.csp.ContentSecurityPolicyMiddleware",
        *settings.MIDDLEWARE,
    ]
    templates = [dict(t, OPTIONS=dict(t["OPTIONS"])) for t in settings.TEMPLATES]
    templates[0]["OPTIONS"]["context_processors"] = [
        *templates[0]["OPTIONS"]["context_processors"],
        "django.template.context_processors.csp",
    ]
    settings.TEMPLATES = templates


@pytest.mark.skipif(django.VERSION < (6, 0), reason="Django's own CSP arrived in 6.0")
def test_fragment_follows_whether_the_nonce_was_generated(page_store: None, settings) -> None:  # type: ignore[no-untyped-def]
    _builtin_csp(settings)
    Client().get("/lib/")  # nonce not generated before the fragment: stored without one
    response = Client().get("/lib/?early=1")
    header = re.search(r"'nonce-([^']*)'", response["Content-Security-Policy"]).group(1)
    # Uncached: both scripts carry this response's nonce.
    assert response.content.count(f'nonce="{header}"'.encode()) == 2, response.content


def test_nonce_page_with_the_views_own_etag_is_not_answered_304(page_store: None, settings) -> None:  # type: ignore[no-untyped-def]
    from csp.constants import NONCE, SELF

    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"script-src": [SELF, NONCE]}}
    settings.MIDDLEWARE = ["csp.middleware.CSPMiddleware", *settings.MIDDLEWARE]
    first = Client().get("/nonce-etag/")
    assert first["ETag"] == '"release-42"'
    again = Client().get("/nonce-etag/", headers={"If-None-Match": '"release-42"'})
    # The browser would reuse the first body (first nonce) under the new header's nonce; the
    # view alone answers 200 with a matching nonce.
    assert again.status_code == 200, (
        again.status_code,
        state(again),
        again.get("Content-Security-Policy"),
    )


PLAIN_FRAGMENT = engines["django"].from_string(
    "{% load freshcache %}{% cachefresh 'plain-frag' %}hello{% endcachefresh %}"
)


def plain_fragment(request: HttpRequest) -> HttpResponse:
    return HttpResponse(PLAIN_FRAGMENT.render({}, request))


@cache_page
def cached_plain_fragment(request: HttpRequest) -> HttpResponse:
    return HttpResponse(PLAIN_FRAGMENT.render({}, request))


@cache_page
def no_nonce_page(request: HttpRequest) -> HttpResponse:
    return HttpResponse("no scripts here")


urlpatterns += [
    path("plain-fragment/", plain_fragment),
    path("cached-plain-fragment/", cached_plain_fragment),
    path("no-nonce/", no_nonce_page),
]


@pytest.mark.skipif(django.VERSION < (6, 0), reason="Django's own CSP arrived in 6.0")
@pytest.mark.parametrize("url", ["/plain-fragment/", "/cached-plain-fragment/"])
def test_any_fragment_under_django_csp_is_not_a_500(page_store: None, settings, url) -> None:  # type: ignore[no-untyped-def]
    _builtin_csp(settings)
    client = Client(raise_request_exception=False)
    response = client.get(url)
    assert response.status_code == 200, response.status_code


@pytest.mark.skipif(django.VERSION < (6, 0), reason="Django's own CSP arrived in 6.0")
def test_miss_and_hit_send_the_same_csp_header(page_store: None, settings) -> None:  # type: ignore[no-untyped-def]
    _builtin_csp(settings)
    miss = Client().get("/no-nonce/")
    hit = Client().get("/no-nonce/")
    assert (state(miss), state(hit)) == ("miss", "hit")
    # Uncached, the nonce is never generated (nothing prints it): no 'nonce-' in the header.
    assert "nonce-" not in miss["Content-Security-Policy"], miss["Content-Security-Policy"]
    assert "nonce-" not in hit["Content-Security-Policy"], hit["Content-Security-Policy"]


@pytest.mark.skipif(django.VERSION < (6, 0), reason="Django's own CSP arrived in 6.0")
async def test_any_fragment_under_django_csp_is_not_a_500_asgi(page_store: None, settings) -> None:  # type: ignore[no-untyped-def]
    from django.test import AsyncClient

    _builtin_csp(settings)
    response = await AsyncClient(raise_request_exception=False).get("/cached-plain-fragment/")
    assert response.status_code == 200, response.status_code
