"""Fragments and who the visitor is: the user, messages, POST data and the session effects of
{% cachefresh %} fragments (issue 10 review: each test failed before its fix)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.test import Client
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from freshcache.http import cache_page
from tests.http.conftest import state

pytestmark = pytest.mark.urls(__name__)


def _t(text: str):  # type: ignore[no-untyped-def]
    return engines["django"].from_string("{% load freshcache %}" + text)


# 1. the auth context processor's `user` inside a fragment, evaluated before the fragment
HEADER_THEN_FRAGMENT = _t(
    "{% if user.is_authenticated %}[logged in]{% endif %}"
    "{% cachefresh 'sidebar-user' %}sidebar of {{ user.username|default:'nobody' }}"
    "{% endcachefresh %}"
)


def sidebar(request: HttpRequest) -> HttpResponse:
    return HttpResponse(HEADER_THEN_FRAGMENT.render({}, request))


# 2. request.POST inside a fragment, rendered during a POST
SEARCH = _t(
    "{% cachefresh 'search-box' %}<input value=\"{{ request.POST.q }}\">{% endcachefresh %}"
)


@csrf_exempt
def search(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        request.POST.get("q")  # a form view validates the POST before rendering
    return HttpResponse(SEARCH.render({}, request))


# 3. one fragment (say in base.html) on two cached pages; it checks the user
BASE = _t(
    "{{ title }} {% cachefresh 'nav' %}{% if user.is_authenticated %}hi{% else %}login{% endif %}"
    "{% endcachefresh %}"
)


@cache_page
def page_a(request: HttpRequest) -> HttpResponse:
    return HttpResponse(BASE.render({"title": "A"}, request))


@cache_page
def page_b(request: HttpRequest) -> HttpResponse:
    return HttpResponse(BASE.render({"title": "B"}, request))


# 4. the session was accessed before the fragment on one render, inside it on another
MAYBE_PRE = _t(
    "{% if request.GET.pre %}{{ user.is_authenticated }}{% endif %}"
    "{% cachefresh 'nav2' %}{% if user.is_authenticated %}hi{% else %}login{% endif %}"
    "{% endcachefresh %}"
)


def maybe_pre(request: HttpRequest) -> HttpResponse:
    return HttpResponse(MAYBE_PRE.render({}, request))


# 5. a fragment inside a per-user page reads request.user (not the context processor's)
GREETING = _t("{% cachefresh 'greeting' %}Hello {{ request.user.username }}{% endcachefresh %}")


@cache_page(vary_on_user=True)
def dashboard(request: HttpRequest) -> HttpResponse:
    return HttpResponse(GREETING.render({}, request))


JINJA_SIDEBAR = (
    "{% if user.is_authenticated %}[in]{% endif %}"
    '{% cachefresh "jinja-side" %}side of {{ user.username or "nobody" }}{% endcachefresh %}'
)
JINJA = {
    "BACKEND": "django.template.backends.jinja2.Jinja2",
    "NAME": "jinja2-identity",
    "OPTIONS": {
        "extensions": ["freshcache.jinja2.FreshcacheExtension"],
        "context_processors": ["django.contrib.auth.context_processors.auth"],
    },
}


def jinja_sidebar(request: HttpRequest) -> HttpResponse:
    template = engines["jinja2-identity"].from_string(JINJA_SIDEBAR)
    return HttpResponse(template.render({}, request))


urlpatterns = [
    path("jinja-sidebar/", jinja_sidebar),
    path("dashboard/", dashboard),
    path("sidebar/", sidebar),
    path("search/", search),
    path("a/", page_a),
    path("b/", page_b),
    path("maybe-pre/", maybe_pre),
]


def test_fragment_does_not_show_alice_to_bob(page_store: None) -> None:
    User.objects.create_user("alice", password="pw")
    alice = Client()
    alice.login(username="alice", password="pw")
    assert b"sidebar of alice" in alice.get("/sidebar/").content
    bob = Client()  # anonymous
    body = bob.get("/sidebar/").content
    assert b"alice" not in body, body  # LEAK: the fragment stored alice's name


def test_jinja2_fragment_does_not_show_alice_to_bob(page_store: None, settings) -> None:  # type: ignore[no-untyped-def]
    settings.TEMPLATES = [*settings.TEMPLATES, JINJA]
    User.objects.create_user("alice", password="pw")
    alice = Client()
    alice.login(username="alice", password="pw")
    assert b"[in]side of alice" in alice.get("/jinja-sidebar/").content
    body = Client().get("/jinja-sidebar/").content
    assert body == b"side of nobody"
    # The anonymous render is stored and served to the anonymous, never to alice.
    assert Client().get("/jinja-sidebar/").content == b"side of nobody"
    assert b"side of alice" in alice.get("/jinja-sidebar/").content


def test_fragment_rendered_during_a_post_is_not_served_to_get(page_store: None) -> None:
    mine = Client().post("/search/", {"q": "my secret query"})
    assert b"my secret query" in mine.content
    other = Client().get("/search/")
    assert b"my secret query" not in other.content, other.content  # LEAK


def test_shared_fragment_does_not_make_other_pages_uncacheable(page_store: None) -> None:
    client = Client()
    assert state(client.get("/a/")) == "miss"
    first_b = client.get("/b/")  # the 'nav' fragment is now a hit inside B's render
    second_b = client.get("/b/")
    assert (state(first_b), state(second_b)) == ("miss", "hit"), (
        first_b["X-Freshcache"],
        second_b["X-Freshcache"],
    )


def test_fragment_hit_keeps_vary_cookie(page_store: None) -> None:
    first = Client().get("/maybe-pre/?pre=1")
    assert "Cookie" in first.get("Vary", "")
    # No read before the fragment: an uncached render accesses the session inside it.
    second = Client().get("/maybe-pre/")
    assert "Cookie" in second.get("Vary", ""), dict(second.items())


async def test_fragment_leak_asgi(page_store: None) -> None:
    from asgiref.sync import sync_to_async
    from django.test import AsyncClient

    await sync_to_async(User.objects.create_user)("alice", password="pw")
    alice = AsyncClient()
    await sync_to_async(alice.login)(username="alice", password="pw")  # alogin: Django 5.0+
    assert b"sidebar of alice" in (await alice.get("/sidebar/")).content
    body = (await AsyncClient().get("/sidebar/")).content
    assert b"alice" not in body, body


async def test_post_fragment_leak_asgi(page_store: None) -> None:
    from django.test import AsyncClient

    await AsyncClient().post("/search/", {"q": "my secret query"})
    other = await AsyncClient().get("/search/")
    assert b"my secret query" not in other.content, other.content


def test_fragment_in_a_per_user_page_does_not_show_alice_to_bob(page_store: None) -> None:
    User.objects.create_user("alice", password="pw")
    User.objects.create_user("bob", password="pw")
    alice, bob = Client(), Client()
    alice.login(username="alice", password="pw")
    bob.login(username="bob", password="pw")
    assert b"Hello alice" in alice.get("/dashboard/").content
    body = bob.get("/dashboard/").content
    assert b"Hello bob" in body, body  # LEAK: bob's own page shows the fragment stored for alice
