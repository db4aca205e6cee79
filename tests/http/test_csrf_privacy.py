"""CSRF tokens in cached pages, and privacy between users, sessions and anonymous visitors."""

from __future__ import annotations

import re

from django.conf import settings
from django.contrib.auth.models import User
from django.middleware.csrf import _unmask_cipher_token
from django.test import Client

import freshcache
from tests.http.conftest import state
from tests.http_app.views import RENDERS

TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([A-Za-z0-9]{64})"')


def _token(response) -> str:  # type: ignore[no-untyped-def]
    match = TOKEN.search(response.content.decode())
    assert match, response.content
    return match.group(1)


def _stored_payloads() -> bytes:
    store = freshcache.store()
    return b"".join(bytes(v) for v in _raw_values(store))


def _raw_values(store: object) -> list[bytes]:
    # The memory store keeps entries in a dict; read whatever bytes it holds.
    values: list[bytes] = []

    def walk(obj: object, depth: int = 0) -> None:
        if depth > 4:
            return
        if isinstance(obj, bytes | bytearray | memoryview):
            values.append(bytes(obj))
        elif isinstance(obj, dict):
            for v in obj.values():
                walk(v, depth + 1)
        elif isinstance(obj, list | tuple):
            for v in obj:
                walk(v, depth + 1)
        elif hasattr(obj, "__dict__") and depth < 3:
            walk(vars(obj), depth + 1)

    walk(store)
    return values


def test_two_browsers_post_forms_from_one_cached_page(client: Client) -> None:
    alice = Client(enforce_csrf_checks=True)
    bob = Client(enforce_csrf_checks=True)
    page_a = alice.get("/t/form/")
    assert state(page_a) == "miss"
    page_b = bob.get("/t/form/")
    assert state(page_b) == "hit"
    assert RENDERS["form"] == 1
    token_a, token_b = _token(page_a), _token(page_b)
    secret_a = alice.cookies[settings.CSRF_COOKIE_NAME].value
    secret_b = bob.cookies[settings.CSRF_COOKIE_NAME].value
    assert secret_a != secret_b
    assert _unmask_cipher_token(token_a) == secret_a
    assert _unmask_cipher_token(token_b) == secret_b
    # The script copy of the token is filled per request too.
    assert page_b.content.decode().count(token_b) == 2
    assert secret_a.encode() not in page_b.content
    assert alice.post("/t/submit/", {"csrfmiddlewaretoken": token_a}).status_code == 200
    assert bob.post("/t/submit/", {"csrfmiddlewaretoken": token_b}).status_code == 200
    # A token from someone else's page does not work: nobody was handed someone else's.
    assert bob.post("/t/submit/", {"csrfmiddlewaretoken": token_a}).status_code == 403
    # Nothing stored holds a secret.
    stored = _stored_payloads()
    assert stored, "expected the page in the memory store"
    assert secret_a.encode() not in stored and token_a.encode() not in stored


def test_returning_visitor_keeps_their_secret_and_gets_a_304(client: Client) -> None:
    browser = Client(enforce_csrf_checks=True)
    first = browser.get("/t/form/")
    etag = first["ETag"]
    assert etag.startswith('W/"')
    again = browser.get("/t/form/", headers={"If-None-Match": etag})
    assert again.status_code == 304
    other = Client()
    assert other.get("/t/form/", headers={"If-None-Match": etag}).status_code == 200


def test_ensure_csrf_cookie_page_is_shared_and_sets_each_cookie(client: Client) -> None:
    one, two = Client(), Client()
    r1 = one.get("/t/spa/")
    r2 = two.get("/t/spa/")
    assert state(r1) == "miss" and state(r2) == "hit"
    name = settings.CSRF_COOKIE_NAME
    assert one.cookies[name].value != two.cookies[name].value
    assert "Set-Cookie" not in (_stored_payloads().decode("latin-1"))


def test_logged_in_users_and_anonymous_never_share(client: Client) -> None:
    User.objects.create_user("alice", password="pw")
    User.objects.create_user("bob", password="pw")
    alice, bob, anon = Client(), Client(), Client()
    alice.login(username="alice", password="pw")
    bob.login(username="bob", password="pw")
    anon_first = anon.get("/t/who/")
    assert b"stranger" in anon_first.content
    assert state(anon_first) == "miss"
    a = alice.get("/t/who/")
    b = bob.get("/t/who/")
    assert b"secret-alice-canary" in a.content and b"alice" not in b.content
    assert b"secret-bob-canary" in b.content
    assert state(a) == "bypass" and "session" in a["X-Freshcache"]
    assert state(anon.get("/t/who/")) == "hit"
    assert b"canary" not in anon.get("/t/who/").content
    assert b"canary" not in _stored_payloads()


def test_vary_on_user_keeps_one_copy_per_user(client: Client) -> None:
    User.objects.create_user("alice", password="pw")
    User.objects.create_user("bob", password="pw")
    alice, bob, anon = Client(), Client(), Client()
    alice.login(username="alice", password="pw")
    bob.login(username="bob", password="pw")
    assert alice.get("/t/per-user/").content == b"hello alice"
    assert bob.get("/t/per-user/").content == b"hello bob"
    assert anon.get("/t/per-user/").content == b"hello anonymous"
    hit_a = alice.get("/t/per-user/")
    hit_b = bob.get("/t/per-user/")
    assert (hit_a.content, state(hit_a)) == (b"hello alice", "hit")
    assert (hit_b.content, state(hit_b)) == (b"hello bob", "hit")
    assert anon.get("/t/per-user/").content == b"hello anonymous"


def test_messages_are_never_shared(client: Client) -> None:
    quiet, noisy = Client(), Client()
    assert state(quiet.get("/t/messages/")) == "miss"
    noisy.get("/t/add-message/")
    mine = noisy.get("/t/messages/")
    assert b"secret-message-canary" in mine.content
    assert state(mine) == "bypass"
    assert state(quiet.get("/t/messages/")) == "hit"
    assert b"canary" not in quiet.get("/t/messages/").content


def test_cookie_read_makes_the_page_uncacheable(client: Client) -> None:
    plain = Client()
    assert state(plain.get("/t/cookie/")) == "miss"  # the cookie was absent: a condition
    themed = Client()
    themed.cookies["theme"] = "canary-dark"
    response = themed.get("/t/cookie/")
    assert response.content == b"theme=canary-dark"
    assert state(response) == "bypass"
    assert plain.get("/t/cookie/").content == b"theme=light"
    assert state(plain.get("/t/cookie/")) == "hit"


def test_responses_that_set_cookies_are_not_stored(client: Client) -> None:
    assert state(client.get("/t/sets-cookie/")) == "bypass"
    assert state(client.get("/t/sets-cookie/")) == "bypass"
    assert RENDERS["sets_cookie"] == 2


def test_authorization_bypasses(client: Client) -> None:
    response = client.get("/t/plain/", headers={"Authorization": "Bearer x"})
    assert state(response) == "bypass"
    assert state(client.get("/t/plain/")) == "miss"
