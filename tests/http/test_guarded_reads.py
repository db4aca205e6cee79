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
from django.test import AsyncClient, Client

import freshcache
from tests.http.conftest import state
from tests.http_app.reads import SOURCES, VALUE, WAYS

# Reads that enumerate every header: never stored, whoever asks.
ENUMERATING = {"iter", "len", "bool", "items", "values", "copy", "dict"}
HEADERS_COPY = ("headers", "copy")
# Same output with and without the header (every request has some headers): nothing to leak.
NO_DIFFERENCE = {("headers", "bool"), ("meta", "bool")}
CASES = [
    pytest.param(source, way, id=f"{source}-{way}")
    for source in SOURCES
    for way in WAYS
    if (source, way) not in NO_DIFFERENCE
]


def _visitor(kind: str, source: str, carries: bool) -> tuple[Any, dict[str, str]]:
    client: Any = Client() if kind == "wsgi" else AsyncClient()
    headers: dict[str, str] = {}
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
    carrier = _visitor(kind, source, True)
    other = _visitor(kind, source, False)
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
        cacheable = source == "cookies" or way not in ENUMERATING or (source, way) == HEADERS_COPY
        assert state(last) == ("hit" if cacheable else "bypass"), last["X-Freshcache"]
