"""Every way a view can read a cookie or a header keeps one visitor's page from another
(issue 9 item 9.3).

For each source (``request.COOKIES``, ``request.headers``, ``request.META``) x each way of
reading (``.get``, ``[]``, ``in``, ``not in``, iteration, ``len``, ``bool``, ``.keys()``,
``.items()``, ``.values()``, ``.copy()``, ``dict(...)``), a ``cache_page`` view branches on
what it read. A visitor who sends the cookie/header and one who does not take turns, in both
orders: each must get exactly what the same view renders uncached for them. The one with the
cookie/header is never stored (``bypass``); the one without is stored and served when the read
can be recorded as "absent" (any cookie read; a header read by name), and never when it cannot
(enumerating the headers).
"""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient, Client, override_settings

import freshcache
from tests.http.conftest import state
from tests.http_app.reads import DICT_ONLY, SOURCES, VALUE, WAYS

# Reads that enumerate every header: never stored, whoever asks.
ENUMERATING = {"iter", "len", "bool", "items", "values", "copy", "dict"}
ENUMERATING |= DICT_ONLY - {"pop", "setdefault"}
HEADERS_COPY = ("headers", "copy")
# Same output with and without the header (every request has some headers): nothing to leak.
NO_DIFFERENCE = {("headers", "bool"), ("meta", "bool")}
CASES = [
    pytest.param(source, way, id=f"{source}-{way}")
    for source in SOURCES
    for way in WAYS
    if (source, way) not in NO_DIFFERENCE and (source == "cookies" or way not in DICT_ONLY)
]


#: Ways that read an *empty* dict's size in C without calling a method (the json encoder): a
#: visitor without cookies is not seen reading them (docs/pages.md, "Limits"), so the visitor
#: without the consent cookie carries another one here.
C_LEVEL = {"json"}


def _visitor(kind: str, source: str, carries: bool, way: str = "") -> tuple[Any, dict[str, str]]:
    client: Any = Client() if kind == "wsgi" else AsyncClient()
    headers: dict[str, str] = {}
    if source == "cookies" and way in C_LEVEL:
        client.cookies["theme"] = "dark"
    if carries and source == "cookies":
        client.cookies["consent"] = VALUE
    elif carries:
        headers["X-Consent"] = VALUE
    return client, headers


async def _get(visitor: tuple[Any, dict[str, str]], url: str) -> Any:
    client, headers = visitor
    if isinstance(client, AsyncClient):
        return await client.get(url, headers=headers)
    return await sync_to_async(client.get)(url, headers=headers)


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
@pytest.mark.parametrize(("source", "way"), CASES)
async def test_a_read_never_serves_one_visitors_page_to_another(
    page_store: None, kind: str, source: str, way: str
) -> None:
    carrier = _visitor(kind, source, True, way)
    other = _visitor(kind, source, False, way)
    truth = {
        True: (await _get(carrier, f"/t/reads-plain/{source}/{way}/")).content,
        False: (await _get(other, f"/t/reads-plain/{source}/{way}/")).content,
    }
    assert truth[True] != truth[False], "the view must branch on the read"
    url = f"/t/reads/{source}/{way}/"
    for order in ([True, False, True, False, False], [False, True, False, True, True]):
        await sync_to_async(freshcache.store().clear)()
        for carries in order:
            response = await _get(carrier if carries else other, url)
            assert response.status_code == 200
            assert response.content == truth[carries], (order, carries, response["X-Freshcache"])
            if carries:
                assert state(response) == "bypass", response["X-Freshcache"]
            else:
                last = response
        # The visitor without the cookie/header came twice: stored, then served.
        # request.headers.copy() is the mapping itself (as in Django): reads through it are by name.
        cacheable = (source == "cookies" and way not in C_LEVEL) or (
            way not in ENUMERATING or (source, way) == HEADERS_COPY
        )
        assert state(last) == ("hit" if cacheable else "bypass"), last["X-Freshcache"]


async def test_an_empty_cookie_dict_read_in_c_is_not_seen_but_never_leaks(page_store: None) -> None:
    """The documented limit: ``json.dumps`` of an *empty* ``request.COOKIES`` reads its size in C,
    so the page of a visitor without cookies is stored unconditioned and may reach a visitor
    with cookies (a page without anyone's data). The reverse never happens: a page that read
    cookies that are there is never stored."""
    url = "/t/reads/cookies/json/"
    bare = _visitor("wsgi", "cookies", False)
    carrier = _visitor("wsgi", "cookies", True)
    assert state(await _get(carrier, url)) == "bypass"
    assert state(await _get(carrier, url)) == "bypass"
    assert (await _get(bare, url)).content == b"cookies json: '{}'"
    assert state(await _get(bare, url)) == "hit"
    response = await _get(carrier, url)
    assert (state(response), response.content) == ("hit", b"cookies json: '{}'")


def test_request_get_pickles_and_copies_under_cache_page(page_store: None) -> None:
    """Pickling reads every parameter: with one outside the key the page is not stored."""
    client = Client()
    first = client.get("/t/reads/query-copy/?page=2&utm_source=x")
    assert (first.status_code, first.content) == (200, b"page 2 2")
    assert state(first) == "bypass", first["X-Freshcache"]
    client.get("/t/reads/query-copy/?page=3")
    again = client.get("/t/reads/query-copy/?page=3")
    assert (state(again), again.content) == ("hit", b"page 3 3")


@pytest.mark.parametrize("enabled", [True, False], ids=["enabled", "disabled"])
def test_request_cookies_is_a_dict_and_untouched_when_disabled(
    page_store: None, enabled: bool
) -> None:
    """Under cache_page request.COOKIES is a dict (writable); with ENABLED False freshcache
    does not wrap the request at all."""
    with override_settings(FRESHCACHE={"STORE": "memory://", "HEADER": True, "ENABLED": enabled}):
        response = Client().get("/t/reads/cookie-type/")
    assert response.status_code == 200
    wrapped = b"_GuardedCookies True" if enabled else b"dict True"
    wrapped += b" {'a': None}"
    assert response.content == wrapped
    assert state(response) == ("miss" if enabled else "bypass")
