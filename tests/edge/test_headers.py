"""Surrogate keys on page responses, through Django's test client: which responses get keys,
in which header and form, and which are marked uncacheable for the edge instead."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import AsyncClient, Client, override_settings

import freshcache
from freshcache.edge import CATCH_ALL_KEY, EDGES, edge_key, purge_keys
from freshcache.http import url_tag
from tests.edge import examples
from tests.http.conftest import state
from tests.http_app.views import RENDERS

pytestmark = pytest.mark.usefixtures("transactional_db")

BASE = {"STORE": "memory://", "HEADER": True}


@contextmanager
def edge(example: dict[str, Any], **more: Any) -> Iterator[Client]:
    with override_settings(FRESHCACHE={**BASE, **example}, ROOT_URLCONF="tests.edge.views", **more):
        freshcache.store().clear()
        RENDERS.clear()
        yield Client()
        freshcache.store().clear()


def keys_in(response: Any, name: str) -> list[str]:
    vendor = EDGES[name]
    return response[vendor.header].split(vendor.separator)


def rows_tags(n: int, path: str) -> set[str]:
    return {f"blog.post:{i}" for i in range(n)} | {url_tag(path)}


def assert_private(response: Any, names: tuple[str, ...], reason: str) -> None:
    assert "private" in response["Cache-Control"]
    for name in names:
        vendor = EDGES[name]
        assert vendor.header not in response
        header, value = vendor.no_store
        assert response[header] == value
    assert response["X-Freshcache-Edge"] == f"private; reason={reason}"


@pytest.mark.parametrize("name", sorted(EDGES))
def test_a_miss_and_its_hits_carry_the_tags_in_the_edges_header(name: str) -> None:
    example = {"EDGE": {"KEYS": [name]}}
    with edge(example) as client:
        miss = client.get("/e/rows/3/")
        hit = client.get("/e/rows/3/")
    expected = sorted(edge_key(t) for t in rows_tags(3, "/e/rows/3/"))
    assert (state(miss), state(hit)) == ("miss", "hit")
    for response in (miss, hit):
        assert keys_in(response, name) == expected
        assert response["Cache-Control"] == "no-cache"  # nothing that lets an edge keep it longer
        assert response["X-Freshcache-Edge"] == "keys"
        for other in set(EDGES) - {name}:
            assert EDGES[other].header not in response


def test_the_separator_is_the_vendors() -> None:
    with edge(examples.VARNISH_AND_CLOUDFLARE) as client:
        response = client.get("/e/rows/2/")
    assert response["xkey"] == "blog.post~3A0 blog.post~3A1 url~3A~2Fe~2Frows~2F2~2F"
    assert response["Cache-Tag"] == "blog.post~3A0,blog.post~3A1,url~3A~2Fe~2Frows~2F2~2F"


def test_a_304_carries_the_keys_too() -> None:
    with edge(examples.VARNISH) as client:
        first = client.get("/e/rows/1/")
        again = client.get("/e/rows/1/", headers={"If-None-Match": first["ETag"]})
    assert again.status_code == 304
    assert again["xkey"] == first["xkey"]


def test_async_views_are_labelled_too() -> None:
    with edge(examples.FASTLY):
        client = AsyncClient()
        import asyncio

        miss = asyncio.run(client.get("/t/async/"))
        hit = asyncio.run(client.get("/t/async/"))
    assert (state(miss), state(hit)) == ("miss", "hit")
    assert edge_key(url_tag("/t/async/")) in miss["Surrogate-Key"].split(" ")
    assert hit["Surrogate-Key"] == miss["Surrogate-Key"]


def test_over_akamais_128_tags_rows_roll_up_to_their_table() -> None:
    tags = rows_tags(300, "/e/rows/300/")
    with edge(examples.AKAMAI) as client:
        miss = client.get("/e/rows/300/")
        hit = client.get("/e/rows/300/")
    keys = keys_in(miss, "akamai")
    assert keys == ["blog.post", edge_key(url_tag("/e/rows/300/"))]
    assert keys_in(hit, "akamai") == keys
    assert all(purge_keys(tag) & set(keys) for tag in tags)
    # Fastly takes the 301 keys (about 4.5 KB) as they are.
    with edge(examples.FASTLY) as client:
        assert len(keys_in(client.get("/e/rows/300/"), "fastly")) == 301


def test_tags_without_a_table_roll_up_to_the_catch_all_key() -> None:
    with edge(examples.AKAMAI) as client:
        response = client.get("/e/topics/200/")
    assert keys_in(response, "akamai") == [CATCH_ALL_KEY]
    assert response["X-Freshcache-Edge"] == "keys"


def test_when_not_even_the_catch_all_key_fits_the_page_is_private_at_the_edge() -> None:
    with edge({"EDGE": {"KEYS": ["varnish"], "MAX_HEADER_BYTES": 3}}) as client:
        miss = client.get("/e/rows/1/")
        hit = client.get("/e/rows/1/")
    assert (state(miss), state(hit)) == ("miss", "hit")  # freshcache still caches it
    for response in (miss, hit):
        assert response["Cache-Control"] == "no-cache, private"
        assert_private(response, ("varnish",), "its keys do not fit the xkey header")


def test_a_views_own_keys_are_kept_first() -> None:
    with edge(examples.FASTLY) as client:
        response = client.get("/e/own/")
    assert response["Surrogate-Key"] == "mine " + " ".join(
        sorted([edge_key("http:own"), edge_key(url_tag("/e/own/"))])
    )


def test_declared_vary_headers_are_sent_in_vary_so_the_edge_keys_on_them() -> None:
    with edge(examples.VARNISH) as client:
        response = client.get("/t/lang/", headers={"Accept-Language": "fr"})
    assert "xkey" in response
    assert "accept-language" in response["Vary"].lower()


def test_learned_vary_a_marker_render_is_private_the_stored_page_is_labelled() -> None:
    with edge(examples.VARNISH) as client:
        first = client.get("/t/variant/", headers={"X-Variant": "a"})
        second = client.get("/t/variant/", headers={"X-Variant": "a"})
    assert state(first) == "bypass"
    assert_private(first, ("varnish",), "not stored")
    assert state(second) == "miss"
    assert "xkey" in second and "X-Variant" in second["Vary"]


# -- responses that are never cacheable for everyone ----------------------------------------


@pytest.mark.parametrize(
    ("path", "headers", "cookies"),
    [
        ("/t/never/", {}, {}),  # @never_cache
        ("/t/sets-cookie/", {}, {}),  # a Set-Cookie: never stored
        ("/t/plain/", {"Authorization": "Basic eDp5"}, {}),  # Authorization: bypassed
        ("/t/plain/", {}, {"sessionid": "abc"}),  # a session: bypassed
    ],
)
def test_bypassed_responses_carry_no_keys_and_are_private(
    path: str, headers: dict[str, str], cookies: dict[str, str]
) -> None:
    for name, example in examples.ALL.items():
        if name == "LOCAL" or "KEYS" not in example["EDGE"]:  # PUBLISHED: no edge headers
            continue
        with edge(example) as client:
            client.cookies.load(cookies)
            response = client.get(path, headers=headers)
        assert state(response) == "bypass"
        assert_private(response, tuple(example["EDGE"]["KEYS"]), "not stored")


def test_a_per_user_page_is_never_labelled() -> None:
    with edge(examples.VARNISH) as client:
        user = User.objects.create_user("ann", password="pw")
        client.force_login(user)
        miss = client.get("/t/per-user/")
        hit = client.get("/t/per-user/")
    assert (state(miss), state(hit)) == ("miss", "hit")
    for response in (miss, hit):
        assert_private(response, ("varnish",), "the page is cached per user")


def test_a_page_with_a_csrf_token_is_never_labelled() -> None:
    with edge(examples.CLOUDFLARE) as client:
        miss = client.get("/t/form/")
        hit = client.get("/t/form/")
    assert (state(miss), state(hit)) == ("miss", "hit")
    for response in (miss, hit):
        assert_private(
            response,
            ("cloudflare",),
            "the page has per-request parts (a CSRF token, a CSP nonce or a placeholder)",
        )


def test_a_page_that_read_the_session_is_never_labelled() -> None:
    with edge(examples.FASTLY) as client:
        miss = client.get("/t/who/")
        hit = client.get("/t/who/")
    assert (state(miss), state(hit)) == ("miss", "hit")
    for response in (miss, hit):
        assert_private(response, ("fastly",), "the page read the session (Vary: Cookie)")
        assert "Cookie" in response["Vary"]


def test_a_page_served_only_without_some_cookie_is_never_labelled() -> None:
    with edge(examples.AKAMAI) as client:
        miss = client.get("/t/cookie/")  # read the absent cookie "theme"
    assert state(miss) == "miss"
    assert_private(miss, ("akamai",), "the page is served only to requests without cookie 'theme'")


def test_a_language_from_the_visitors_cookie_is_not_for_the_edge() -> None:
    with edge(examples.VARNISH, USE_I18N=True) as client:
        client.cookies.load({"django_language": "fr"})
        response = client.get("/t/plain/")
    assert state(response) == "miss"
    assert_private(response, ("varnish",), "the language may come from the visitor's cookie")


def test_without_send_keys_pages_are_private_at_the_edge() -> None:
    with edge(examples.LOCAL) as client:
        miss = client.get("/e/rows/1/")
        hit = client.get("/e/rows/1/")
    assert (state(miss), state(hit)) == ("miss", "hit")
    for response in (miss, hit):
        assert_private(response, ("varnish",), "SEND_KEYS is False")


def test_the_header_saying_why_needs_header_on() -> None:
    with override_settings(
        FRESHCACHE={"STORE": "memory://", **examples.VARNISH}, ROOT_URLCONF="tests.edge.views"
    ):
        freshcache.store().clear()
        response = Client().get("/e/rows/1/")
    assert "xkey" in response
    assert "X-Freshcache-Edge" not in response and "X-Freshcache" not in response


def test_without_edge_settings_nothing_changes() -> None:
    with edge({}) as client:
        stored = client.get("/e/rows/1/")
        bypassed = client.get("/t/plain/", headers={"Authorization": "Basic eDp5"})
    assert stored["Cache-Control"] == "no-cache"
    assert not any(EDGES[n].header in stored for n in EDGES)
    assert "Cache-Control" not in bypassed and "Surrogate-Control" not in bypassed
    assert "X-Freshcache-Edge" not in stored


MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "freshcache.middleware.CacheMiddleware",
]


def test_the_middleware_labels_pages_and_keeps_never_cache_paths_off_the_edge() -> None:
    example = {**examples.VARNISH, "NEVER_CACHE_PATHS": ["/e/private/"]}
    with edge(example, MIDDLEWARE=MIDDLEWARE) as client:
        miss = client.get("/e/site/")
        hit = client.get("/e/site/")
        never = client.get("/e/private/site/")
    assert (state(miss), state(hit)) == ("miss", "hit")
    assert (
        hit["xkey"]
        == miss["xkey"]
        == " ".join(sorted([edge_key("http:site"), edge_key(url_tag("/e/site/"))]))
    )
    assert "xkey" not in never and "X-Freshcache" not in never
    assert never["Cache-Control"] == "private"
    assert never["Surrogate-Control"] == "no-store"


def test_an_error_while_labelling_is_never_a_500_and_the_page_is_private(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from freshcache.edge import response as edge_response

    def broken(*args: Any) -> None:
        raise RuntimeError("fault injected")

    monkeypatch.setattr(edge_response, "label", broken)
    with edge(examples.VARNISH) as client:
        response = client.get("/e/rows/1/")
    assert response.status_code == 200 and state(response) == "miss"
    assert_private(response, ("varnish",), "internal error: RuntimeError")


def test_a_new_render_with_other_tags_is_not_a_304_for_the_edge() -> None:
    """An edge that revalidates a copy with its ETag must get the new keys: Akamai keeps a
    copy's old tags on a 304 (docs/edge.md), so the ETag covers the page's tags too."""
    from tests.edge import views

    views.TOPIC[0] = "topic-a"
    with edge(examples.AKAMAI) as client:
        first = client.get("/e/same/")
        assert state(first) == "miss" and "topic-a" in first["Edge-Cache-Tag"]
        again = client.get("/e/same/", headers={"If-None-Match": first["ETag"]})
        assert again.status_code == 304 and state(again) == "hit"  # nothing changed: a 304
        views.TOPIC[0] = "topic-b"
        freshcache.invalidate("topic-a")
        renewed = client.get("/e/same/", headers={"If-None-Match": first["ETag"]})
        assert renewed.status_code == 200, "a 304 would keep the copy's old tags at the edge"
        assert renewed.content == b"same" and "topic-b" in renewed["Edge-Cache-Tag"]
        assert renewed["ETag"] != first["ETag"]
        hit = client.get("/e/same/", headers={"If-None-Match": renewed["ETag"]})
        assert hit.status_code == 304 and hit["ETag"] == renewed["ETag"]
