"""Break-it review of issue 13, shadow mode: what the re-render in the background thread does
not carry over from the request it renders again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import path
from django.utils import timezone, translation

import freshcache
from freshcache.http import cache_page, shadow
from tests.conftest import store_url
from tests.http.conftest import state

pytestmark = [pytest.mark.urls(__name__), pytest.mark.django_db(transaction=True)]


@cache_page
def spoken(request: HttpRequest) -> HttpResponse:
    """A page in the visitor's language (LocaleMiddleware, above the page cache, chose it):
    the key holds the language, so each language has its own entry."""
    return HttpResponse(f"<p>{translation.get_language()}</p>")


@cache_page
def zoned(request: HttpRequest) -> HttpResponse:
    """A page in the time zone a middleware above the cache activated (the key holds it)."""
    return HttpResponse(f"<p>{timezone.get_current_timezone_name()}</p>")


def zone_middleware(get_response):  # type: ignore[no-untyped-def]
    def middleware(request: HttpRequest) -> HttpResponse:
        with timezone.override(request.GET.get("tz", "UTC")):
            return get_response(request)

    return middleware


urlpatterns = [path("spoken/", spoken), path("zoned/", zoned)]

SITE = {
    "USE_I18N": True,
    "LANGUAGE_CODE": "en",
    "LANGUAGES": [("en", "English"), ("fr", "French")],
    "MIDDLEWARE": [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.locale.LocaleMiddleware",
        f"{__name__}.zone_middleware",
        "django.middleware.common.CommonMiddleware",
    ],
}


@pytest.fixture
def shadowed(store_kind: str, transactional_db: None) -> Iterator[str]:
    conf = {"STORE": store_url(store_kind), "HEADER": True, "SHADOW": {"RATE": 1.0}}
    with override_settings(FRESHCACHE=conf, **SITE):
        freshcache.store().clear()
        yield store_kind
        assert shadow.wait()
        freshcache.store().clear()


def _mismatches() -> int:
    return int(freshcache.stats()["shadow_mismatches"])


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("/spoken/", {"HTTP_ACCEPT_LANGUAGE": "fr"}),
        ("/zoned/?tz=Europe/Paris", {}),
    ],
)
def test_a_shadow_render_runs_in_the_requests_language_and_time_zone(
    shadowed: str, url: str, headers: dict[str, str]
) -> None:
    """The re-render runs in shadow mode's own thread, where the language and time zone a
    middleware above the cache activated for the request are not active: every sampled hit of
    a French (or Paris) page is rendered in English (UTC) and reported as a mismatch, a
    missed dependency that is not there (the WARNING, the counter, the signal)."""
    client = Client(**headers)
    assert state(client.get(url)) == "miss"
    before = _mismatches()
    response = client.get(url)
    assert state(response) == "hit" and shadow.wait()
    assert _mismatches() == before, "a false positive: the page did not change"
