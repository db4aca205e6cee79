"""``freshcache.page_outcome(request)`` / ``request_outcomes(request)``: what a middleware, a
template or a test reads after a real request, and that no request ever sees another's."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings
from django.template import RequestContext, Template
from django.test import AsyncClient, Client, override_settings

import freshcache
from freshcache import events
from freshcache import outcome as outcomes
from freshcache.http import url_tag
from tests.http.conftest import state

OUTCOME = "freshcache.middleware.OutcomeMiddleware"


@pytest.fixture
def recorded(page_store: None) -> Iterator[Client]:
    """A client of a site with ``OutcomeMiddleware`` first."""
    with override_settings(MIDDLEWARE=[OUTCOME, *settings.MIDDLEWARE]):
        yield Client()
    assert outcomes._collect not in events._listeners  # stops with the last request inside it


def test_a_miss_then_a_hit_then_a_bypass(recorded: Client) -> None:
    first = recorded.get("/t/plain/")
    miss = freshcache.page_outcome(first.wsgi_request)
    assert miss is not None
    assert (miss.kind, miss.name, miss.outcome, miss.stored, miss.reason) == (
        "page", "tests.http_app.views.plain", "miss", True, None
    )
    assert url_tag("/t/plain/") in miss.tags
    assert isinstance(miss.seconds, float)

    second = recorded.get("/t/plain/")
    hit = freshcache.page_outcome(second.wsgi_request)
    assert hit is not None and state(second) == "hit"
    assert (hit.outcome, hit.stored, hit.reason, hit.seconds) == ("hit", False, None, None)
    assert hit.tags == miss.tags

    posted = recorded.post("/t/plain/")
    bypass = freshcache.page_outcome(posted.wsgi_request)
    assert bypass is not None
    assert (bypass.outcome, bypass.stored, bypass.reason) == ("bypass", False, "method POST")


def test_the_request_outcomes_hold_the_fragments_then_the_page(recorded: Client) -> None:
    first = recorded.get("/t/fragments/?n=4")
    assert [(e.kind, e.name, e.outcome, e.stored) for e in
            freshcache.request_outcomes(first.wsgi_request)] == [
        ("fragment", "inner", "miss", True),
        ("fragment", "outer", "miss", True),
        ("page", "tests.http_app.views.fragments", "miss", True),
    ]  # fmt: skip
    (page,) = [e for e in freshcache.request_outcomes(first.wsgi_request) if e.kind == "page"]
    assert page is freshcache.page_outcome(first.wsgi_request)
    assert "frag:inner" in page.tags  # the page depends on what its fragments read

    again = recorded.get("/t/fragments/?n=4")
    assert [(e.kind, e.outcome) for e in freshcache.request_outcomes(again.wsgi_request)] == [
        ("page", "hit")
    ]


def test_without_the_middleware_nothing_is_recorded(client: Client) -> None:
    response = client.get("/t/plain/")
    assert state(response) == "miss"
    assert freshcache.page_outcome(response.wsgi_request) is None
    assert freshcache.request_outcomes(response.wsgi_request) == ()
    assert outcomes._collect not in events._listeners


def test_a_template_rendered_after_the_page_shows_its_outcome(recorded: Client) -> None:
    recorded.get("/t/plain/")
    response = recorded.get("/t/plain/")
    badge = Template(
        "{% load freshcache %}{% page_outcome as o %}{{ o.outcome }} {{ o.name }} "
        "{{ o.tags|length }}"
    )
    text = badge.render(RequestContext(response.wsgi_request))
    assert text == f"hit tests.http_app.views.plain {len(freshcache.page_outcome(response.wsgi_request).tags)}"  # type: ignore[union-attr]  # noqa: E501
    assert Template("{% load freshcache %}{% page_outcome as o %}[{{ o }}]").render(
        RequestContext(Client().get("/t/submit/").wsgi_request)
    ) == "[None]"


def test_concurrent_threads_see_only_their_own_outcome(recorded: Client) -> None:
    def fetch(n: int) -> tuple[int, frozenset[str], str]:
        response = Client().get(f"/t/async/{n}/")
        outcome = freshcache.page_outcome(response.wsgi_request)
        assert outcome is not None
        return n, outcome.tags, outcome.outcome

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(fetch, range(24)))
    for n, tags, outcome in results:
        assert outcome == "miss"
        assert {t for t in tags if t.startswith("http:async:")} == {f"http:async:{n}"}


@pytest.mark.asyncio
async def test_concurrent_async_requests_see_only_their_own_outcome(page_store: None) -> None:
    with override_settings(MIDDLEWARE=[OUTCOME, *settings.MIDDLEWARE]):
        client = AsyncClient()
        pages = range(40)
        for round_ in ("miss", "hit"):
            responses = await asyncio.gather(*(client.get(f"/t/async/{n}/") for n in pages))
            for n, response in zip(pages, responses, strict=True):
                outcome = freshcache.page_outcome(response.asgi_request)
                assert outcome is not None and outcome.outcome == round_
                assert {t for t in outcome.tags if t.startswith("http:async:")} == {
                    f"http:async:{n}"
                }
                assert [e.kind for e in freshcache.request_outcomes(response.asgi_request)] == [
                    "page"
                ]
    assert outcomes._collect not in events._listeners
