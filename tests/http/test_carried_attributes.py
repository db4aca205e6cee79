"""Odd response attributes, odd cookies, 304s under middleware above (issue 10 review)."""

from __future__ import annotations

import collections

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path
from django.utils.safestring import mark_safe

from freshcache.http import cache_page
from tests.http.conftest import state

pytestmark = pytest.mark.urls(__name__)


def _self_ref() -> list:
    a: list = []
    a.append(a)
    return a


def _deep(n: int) -> dict:
    d: dict = {}
    for _ in range(n):
        d = {"x": d}
    return d


VALUES = {
    "selfref": _self_ref,
    "deep": lambda: _deep(500),
    "deep9": lambda: _deep(9),
    "intkeys": lambda: {1: "a"},
    "huge": lambda: list(range(200_000)),
    "ordered": lambda: collections.OrderedDict(a=1),
    "nan": lambda: float("nan"),
    "safe": lambda: mark_safe("<b>x</b>"),
    "bytes": lambda: b"x",
    "setofstr": lambda: {"a", "b"},
    "tuplekeydict": lambda: {("a",): 1},
}


@cache_page
def attr(request: HttpRequest, kind: str) -> HttpResponse:
    response = HttpResponse(f"attr {kind}")
    response.thing = VALUES[kind]()  # type: ignore[attr-defined]
    return response


@cache_page
def odd_cookie(request: HttpRequest, how: str) -> HttpResponse:
    response = HttpResponse("cookie")
    if how == "lower":
        response.headers["set-cookie"] = "a=1"
    elif how == "morsel":
        response.cookies["b"] = "2"
    return response


@cache_page
def big(request: HttpRequest) -> HttpResponse:
    return HttpResponse("x" * 1000)


urlpatterns = [
    path("big/", big),
    path("attr/<str:kind>/", attr),
    path("cookie/<str:how>/", odd_cookie),
]


# Carried (a hit equal to the render) or refused with a reason naming the attribute.
CARRIED = {"deep9", "nan", "safe", "setofstr"}
REFUSED = {
    "selfref": "nested too deeply",
    "deep": "nested too deeply",
    "intkeys": "keys that are not strings",
    "tuplekeydict": "keys that are not strings",
    "ordered": "OrderedDict",
    "bytes": "bytes",
    "huge": "too large",
}


@pytest.mark.parametrize("kind", sorted(VALUES))
def test_odd_attribute_is_never_a_500_and_hits_match(client: Client, kind: str) -> None:
    c = Client(raise_request_exception=False)
    first = c.get(f"/attr/{kind}/")
    second = c.get(f"/attr/{kind}/")
    assert first.status_code == second.status_code == 200
    if kind in CARRIED:
        assert state(second) == "hit"
        a, b = first.thing, second.thing
        if kind == "nan":
            assert b != b
        else:
            assert a == b and type(a) is type(b), (kind, type(a), type(b))
    else:
        assert state(second) == "bypass"
        assert REFUSED[kind] in second["X-Freshcache"]
        assert kind == "huge" or "response attribute 'thing'" in second["X-Freshcache"]


@pytest.mark.parametrize("how", ["lower", "morsel"])
def test_cookie_never_stored(client: Client, how: str) -> None:
    client.get(f"/cookie/{how}/")
    second = Client().get(f"/cookie/{how}/")
    assert state(second) == "bypass"
