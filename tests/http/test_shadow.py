"""Shadow mode (issue 13 item 5): sampled page hits rendered again after the response was sent,
on the real stores, with a dependency planted where capture cannot see it (a module global)."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.test import AsyncClient, Client, override_settings
from django.urls import include, path

import freshcache
from freshcache import signals
from freshcache.checks import check_settings
from freshcache.conf import read
from freshcache.http import cache_page, shadow, shadow_exempt
from freshcache.testing import hook
from tests.conftest import pytest_runtest_setup, store_url
from tests.http.conftest import state
from tests.test_metrics import Scraper
from tests.testapp.models import Item

pytestmark = [pytest.mark.urls(__name__), pytest.mark.django_db(transaction=True)]

#: The planted dependency: read by the views, invisible to capture (no query, no tag).
PLANTED = {"greeting": "hello"}
#: Real renders per view (shadow renders included).
CALLS: Counter[str] = Counter()
RAISE = {"now": False}


def _page(name: str, body: str) -> HttpResponse:
    CALLS[name] += 1
    return HttpResponse(body)


@cache_page
def planted(request: HttpRequest) -> HttpResponse:
    items = ", ".join(Item.objects.order_by("name").values_list("name", flat=True))
    return _page("planted", f"<h1>Greeting</h1>\n<p>{PLANTED['greeting']}</p>\n<p>{items}</p>\n")


@cache_page
async def planted_async(request: HttpRequest) -> HttpResponse:
    return _page("planted_async", f"<p>{PLANTED['greeting']}</p>")


def planted_plain(request: HttpRequest) -> HttpResponse:  # under CacheMiddleware
    return _page("planted_plain", f"<p>{PLANTED['greeting']}</p>")


FRAGMENT = engines["django"].from_string(
    "{% load freshcache %}<div>{% cachefresh 'greeting' %}{{ greeting }}{% endcachefresh %}</div>"
)


@cache_page
def planted_in_fragment(request: HttpRequest) -> HttpResponse:
    CALLS["planted_in_fragment"] += 1
    return HttpResponse(FRAGMENT.render({"greeting": _Lazy()}, request))


class _Lazy:
    """Reads the planted value only when the fragment renders (a hit would not read it)."""

    def __str__(self) -> str:
        return PLANTED["greeting"]


CSRF_FORM = engines["django"].from_string(
    '<form method="post">{% csrf_token %}<input name="q"></form>{{ csrf_token }}'
)


@cache_page
def csrf_form(request: HttpRequest) -> HttpResponse:
    CALLS["csrf_form"] += 1
    return HttpResponse(CSRF_FORM.render({}, request))


NONCE = engines["django"].from_string('<script nonce="{{ request.csp_nonce }}">go()</script>')


@cache_page
def nonce_page(request: HttpRequest) -> HttpResponse:
    CALLS["nonce_page"] += 1
    return HttpResponse(NONCE.render({}, request))


@cache_page
def fragile(request: HttpRequest) -> HttpResponse:
    if RAISE["now"]:
        raise RuntimeError("the shadow render broke")
    return _page("fragile", "fine")


@shadow_exempt
@cache_page
def counted(request: HttpRequest) -> HttpResponse:
    return _page("counted", f"<p>{PLANTED['greeting']}</p>")


@cache_page
def excluded(request: HttpRequest) -> HttpResponse:
    return _page("excluded", f"<p>{PLANTED['greeting']}</p>")


urlpatterns = [
    path("metrics/", include("freshcache.metrics.urls")),
    path("planted/", planted, name="planted"),
    path("planted-async/", planted_async),
    path("planted-plain/", planted_plain),
    path("planted-fragment/", planted_in_fragment),
    path("csrf/", csrf_form),
    path("nonce/", nonce_page),
    path("fragile/", fragile),
    path("counted/", counted),
    path("excluded/", excluded),
]

#: What the observability docs show (docs/observability.md, "Shadow mode").
SHADOW = {"RATE": 1.0, "EXCLUDE": [r"^/excluded/"]}


def _settings(kind: str, **extra: Any) -> dict[str, Any]:
    return {"STORE": store_url(kind), "HEADER": True, "SHADOW": SHADOW, **extra}


@pytest.fixture
def shadowed(store_kind: str, transactional_db: None) -> Iterator[str]:
    """Each real store in turn, shadow mode on for every hit."""
    yield from _configured(store_kind)


@pytest.fixture
def on_redis(request: pytest.FixtureRequest, transactional_db: None) -> Iterator[str]:
    """The Redis store, shadow mode on for every hit."""
    request.node.add_marker(pytest.mark.redis)
    pytest_runtest_setup(request.node)
    yield from _configured("redis")


def _configured(kind: str, **extra: Any) -> Iterator[str]:
    with override_settings(FRESHCACHE=_settings(kind, **extra)):
        freshcache.store().clear()
        CALLS.clear()
        PLANTED["greeting"] = "hello"
        RAISE["now"] = False
        yield kind
        assert shadow.wait(), "shadow renders still queued"
        freshcache.store().clear()


def _stats() -> dict[str, int]:
    return {k: v for k, v in freshcache.stats().items() if k.startswith("shadow_")}


def _delta(before: dict[str, int]) -> dict[str, int]:
    return {k: v - before[k] for k, v in _stats().items() if v != before[k]}


def _hit(client: Client, url: str) -> Any:
    response = client.get(url)
    assert response.status_code == 200 and state(response) == "hit", response
    assert shadow.wait()
    return response


def test_a_planted_dependency_is_caught(shadowed: str, caplog: pytest.LogCaptureFixture) -> None:
    received: list[dict[str, Any]] = []

    def on_mismatch(sender: str, **kwargs: Any) -> None:
        received.append(kwargs)

    Item.objects.create(name="pear")
    client = Client()
    assert state(client.get("/planted/")) == "miss"
    _hit(client, "/planted/")  # nothing changed: the shadow render matches
    before = _stats()
    PLANTED["greeting"] = "bonjour"  # capture cannot see this
    signals.shadow_mismatch.connect(on_mismatch)
    try:
        with caplog.at_level(logging.WARNING, logger="freshcache"):
            response = _hit(client, "/planted/")
    finally:
        signals.shadow_mismatch.disconnect(on_mismatch)

    assert b"hello" in response.content  # the visitor got the cached page, as before
    assert _delta(before) == {"shadow_mismatches": 1}
    [record] = [r for r in caplog.records if "shadow render" in r.getMessage()]
    message = record.getMessage()
    assert record.levelname == "WARNING"
    assert "shadow render of http://testserver/planted/ differs" in message
    assert "(page planted, tags: testapp.item, url:/planted/)" in message
    assert "-<p>hello</p>\n+<p>bonjour</p>" in message
    [sent] = received
    assert sent["url"] == "http://testserver/planted/" and sent["name"] == "planted"
    assert "url:/planted/" in sent["tags"] and "+<p>bonjour</p>" in sent["diff"]


def test_mismatches_are_counted_in_the_metrics(transactional_db: None) -> None:
    with override_settings(FRESHCACHE=_settings("memory", METRICS=True)):
        client = Client()
        client.get("/planted/")
        _hit(client, "/planted/")
        scraper = Scraper(client)
        PLANTED["greeting"] = "hallo"
        _hit(client, "/planted/")
        scraper.again()
    PLANTED["greeting"] = "hello"
    page = {"kind": "page", "name": "planted"}
    assert scraper.delta("freshcache_shadow_mismatches_total", **page) == 1
    assert scraper.delta("freshcache_shadow_renders_total", result="mismatch") == 1
    assert scraper.delta("freshcache_shadow_renders_total", result="match") == 0


async def test_under_asgi(on_redis: str) -> None:
    client = AsyncClient()
    await client.get("/planted-async/")
    PLANTED["greeting"] = "hej"
    before = _stats()
    response = await client.get("/planted-async/")
    assert state(response) == "hit" and response.content == b"<p>hello</p>"
    assert shadow.wait()
    assert _delta(before) == {"shadow_mismatches": 1}


def _shadow_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Shadow mode's warnings (a mismatch, a render that raised, one not scheduled), not
    another part's: the journal's flush thread may log a Redis timeout on a loaded machine."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and "shadow" in r.getMessage()
    ]


def test_no_mismatch_while_nothing_changed(on_redis: str, caplog: pytest.LogCaptureFixture) -> None:
    client = Client()
    client.get("/planted/")
    before = _stats()
    with caplog.at_level(logging.WARNING, logger="freshcache"):
        for _ in range(3):
            _hit(client, "/planted/")
    assert _delta(before) == {"shadow_matches": 3}
    assert CALLS["planted"] == 4  # one miss, three shadow renders
    assert not _shadow_warnings(caplog)


def test_async_view_and_the_middleware_are_shadowed(on_redis: str, settings: Any) -> None:
    client = Client()
    client.get("/planted-async/")
    PLANTED["greeting"] = "hola"
    before = _stats()
    _hit(client, "/planted-async/")
    assert _delta(before) == {"shadow_mismatches": 1}

    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "freshcache.middleware.CacheMiddleware"]
    client = Client()  # a client loads the middleware once
    client.get("/planted-plain/")
    PLANTED["greeting"] = "ciao"
    before = _stats()
    _hit(client, "/planted-plain/")
    assert _delta(before) == {"shadow_mismatches": 1}
    assert CALLS["planted_plain"] == 2


def test_fragments_inside_the_shadow_render_bypass_the_store(on_redis: str) -> None:
    client = Client()
    client.get("/planted-fragment/")
    PLANTED["greeting"] = "salut"
    before = _stats()
    # From the store, the fragment would still say "hello" and hide the difference.
    _hit(client, "/planted-fragment/")
    assert _delta(before) == {"shadow_mismatches": 1}
    # Nothing was stored by the shadow render: the page and its fragment are still the old ones.
    assert b"hello" in _hit(client, "/planted-fragment/").content


@pytest.mark.parametrize("url", ["/csrf/", "/nonce/"])
def test_per_request_slots_are_no_mismatch(
    on_redis: str, url: str, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from csp.constants import NONCE, SELF

    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"script-src": [SELF, NONCE]}}
    settings.MIDDLEWARE = ["csp.middleware.CSPMiddleware", *settings.MIDDLEWARE]
    Client().get(url)
    before = _stats()
    with caplog.at_level(logging.WARNING, logger="freshcache"):
        first = _hit(Client(), url)  # a new visitor each time: another token, another nonce
        second = _hit(Client(), url)
    assert first.content != second.content  # the per-request text did differ
    assert _delta(before) == {"shadow_matches": 2}
    assert not _shadow_warnings(caplog)


def test_a_write_between_the_hit_and_the_shadow_render_is_not_reported(
    on_redis: str, caplog: pytest.LogCaptureFixture
) -> None:
    Item.objects.create(name="apple")
    client = Client()
    client.get("/planted/")
    before = _stats()

    def write(**context: Any) -> None:
        Item.objects.create(name="banana")  # committed and bumped before the re-render reads

    with caplog.at_level(logging.WARNING, logger="freshcache"), hook("before_shadow_render", write):
        response = _hit(client, "/planted/")
    assert b"banana" not in response.content
    assert _delta(before) == {"shadow_skipped": 1}
    assert not _shadow_warnings(caplog)
    assert b"apple, banana" in client.get("/planted/").content  # the write was real


def test_an_exception_in_the_shadow_render_never_reaches_the_visitor(
    on_redis: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = Client()
    client.get("/fragile/")
    RAISE["now"] = True
    before = _stats()
    with caplog.at_level(logging.WARNING, logger="freshcache"):
        response = _hit(client, "/fragile/")
    assert response.content == b"fine"
    assert _delta(before) == {"shadow_errors": 1}
    [record] = [r for r in caplog.records if "raised; ignored" in r.getMessage()]
    assert "the shadow render broke" in str(record.exc_info[1] if record.exc_info else "")


def test_rate_zero_renders_nothing_again(transactional_db: None) -> None:
    with override_settings(FRESHCACHE=_settings("memory", SHADOW={"RATE": 0})):
        assert shadow.rate == 0
        CALLS.clear()
        client = Client()
        client.get("/planted/")
        PLANTED["greeting"] = "changed"
        before = _stats()
        _hit(client, "/planted/")
        assert _delta(before) == {}
        assert CALLS["planted"] == 1
    with override_settings(FRESHCACHE=_settings("memory")):
        assert shadow.rate == 1.0
    with override_settings(FRESHCACHE={"STORE": "memory://"}):
        assert shadow.rate == 0  # off by default
    PLANTED["greeting"] = "hello"


def test_exempt_views_and_excluded_paths_run_once(on_redis: str) -> None:
    client = Client()
    for url in ("/counted/", "/excluded/"):
        client.get(url)
    PLANTED["greeting"] = "changed"
    before = _stats()
    for url in ("/counted/", "/excluded/"):
        _hit(client, url)
    assert _delta(before) == {}
    assert CALLS["counted"] == 1 and CALLS["excluded"] == 1


def test_head_hits_are_not_rendered_again(on_redis: str) -> None:
    client = Client()
    client.get("/planted/")
    PLANTED["greeting"] = "changed"
    before = _stats()
    response = client.head("/planted/")
    assert state(response) == "hit"
    assert shadow.wait()
    assert _delta(before) == {} and CALLS["planted"] == 1


def test_a_full_queue_drops_and_counts(transactional_db: None) -> None:
    entered, release = threading.Event(), threading.Event()

    def block(**context: Any) -> None:
        entered.set()
        release.wait(10)

    with override_settings(FRESHCACHE=_settings("memory", SHADOW={"RATE": 1, "QUEUE_SIZE": 1})):
        client = Client()
        client.get("/planted/")
        before = _stats()
        with hook("before_shadow_render", block):
            client.get("/planted/")  # taken by the thread, which waits
            assert entered.wait(10)
            client.get("/planted/")  # queued
            client.get("/planted/")  # dropped
            assert _delta(before) == {"shadow_dropped": 1}
            release.set()
            assert shadow.wait()
        assert _delta(before) == {"shadow_dropped": 1, "shadow_matches": 2}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0.05, "FRESHCACHE['SHADOW'] must be a dict such as {'RATE': 0.01}, or None, not 0.05 "
               "(write {'RATE': 0.05})"),
        ({"RATE": "0.1"}, "FRESHCACHE['SHADOW']['RATE'] must be a number from 0 to 1, without "
                          "quotes, not the string '0.1'"),
        ({"RATE": 5}, "FRESHCACHE['SHADOW']['RATE'] must be a number from 0 to 1, without "
                      "quotes, not 5 (a share: write 0.05 for 5%)"),
        ({"RAET": 0.1}, "FRESHCACHE['SHADOW'] has an unknown key 'RAET' (did you mean 'RATE'?); "
                        "it understands EXCLUDE, QUEUE_SIZE, RATE"),
        ({"RATE": 0.1, "EXCLUDE": "^/admin/"}, "FRESHCACHE['SHADOW']['EXCLUDE'] must be a list "
         "of regular expressions such as [r'^/counter/'], not the string '^/admin/' (write "
         "['^/admin/'])"),
        ({"RATE": 0.1, "EXCLUDE": ["^/a("]}, "FRESHCACHE['SHADOW']['EXCLUDE'] has '^/a(', which "
         "is not a regular expression: missing ), unterminated subpattern at position 3"),
        ({"RATE": 0.1, "QUEUE_SIZE": 0}, "FRESHCACHE['SHADOW']['QUEUE_SIZE'] must be a positive "
         "whole number, not 0"),
    ],
)  # fmt: skip
def test_bad_settings_are_named(value: Any, message: str) -> None:
    settings, problems = read({"SHADOW": value})
    assert [p.message for p in problems] == [message]
    assert settings.shadow.rate == 0 and not settings.enabled
    with override_settings(FRESHCACHE={"SHADOW": value}):
        assert shadow.rate == 0
        [error] = [m for m in check_settings() if m.id == "freshcache.E024"]
        assert error.msg == message
        assert error.hint == (
            "Write SHADOW as a dict: 'RATE' the share of page hits to re-render, a number from 0 "
            "to 1 (0.01 is 1%), 'EXCLUDE' a list of path patterns never re-rendered, "
            "'QUEUE_SIZE' a whole number greater than 0. See docs/observability.md."
        )
