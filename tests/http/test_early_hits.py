"""Early hits (issue 11): ``EarlyHitMiddleware`` answers cookie-less GETs of stored pages before
the other middleware, replaying the response the whole stack gave an earlier hit.

What is proven here, against the real Redis (with and without a near cache) and the memory store:
an early hit is byte for byte the hit the stack would give; it is never older than a write that
returned, in this process or another; a request it cannot tell apart from the one recorded
(cookie, credentials, conditions, another method, query, language or varied header) is never
answered from a record; pages with anything per request are never recorded; a misconfigured stack
turns it off with the reason (freshcache.W012); a fault in it costs the early hit, never the
answer; and a Hypothesis differential: with the middleware or without, every response is the same.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.checks import Warning
from django.db import connection
from django.test import AsyncClient, Client, override_settings
from django.utils import translation
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

import freshcache
from freshcache.http import early, register_placeholder, serve
from freshcache.invalidation import invalidate_tags
from tests.conftest import store_url
from tests.helpers.near_trials import wait_ready
from tests.http.conftest import count_calls, state
from tests.http_app import early_views
from tests.http_app.views import RENDERS
from tests.testapp.models import Item

EARLY = "freshcache.middleware.EarlyHitMiddleware"
STAMP = "tests.http_app.early_views.StampMiddleware"
LOCALE = "django.middleware.locale.LocaleMiddleware"


def stack(*extra: str, first: bool = True) -> list[str]:
    """The test settings' MIDDLEWARE with the early middleware first (or second)."""
    rest = [*(name for name in settings.MIDDLEWARE if name != EARLY), *extra]
    return [EARLY, *rest] if first else [rest[0], EARLY, *rest[1:]]


def early_answers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths answered early from now on (``_respond`` gave a response)."""
    answered: list[str] = []
    real = early._respond

    def counted(full: Any, hit: Any) -> Any:
        response = real(full, hit)
        if response is not None:
            answered.append("early")
        return response

    monkeypatch.setattr(early, "_respond", counted)
    return answered


@pytest.fixture
def setup(request: pytest.FixtureRequest, transactional_db: None) -> Iterator[Any]:
    """The store of the kind given by indirect parametrization (default ``memory``), empty,
    with the header on and the early middleware first."""
    kind = getattr(request, "param", "memory")
    if kind.startswith("redis"):
        request.node.add_marker(pytest.mark.redis)
        from tests.conftest import pytest_runtest_setup

        pytest_runtest_setup(request.node)
    config = {"STORE": store_url(kind), "HEADER": True}
    with override_settings(MIDDLEWARE=stack(), FRESHCACHE=config):
        store = freshcache.store()
        store.clear()
        if hasattr(store, "channel"):
            wait_ready(store)  # type: ignore[arg-type]
        RENDERS.clear()
        early.forget()
        yield store
        store.clear()
    early.forget()


def twice(client: Client, path: str, **headers: Any) -> Any:
    """A miss, then the hit that records the early response; the hit is returned."""
    assert state(client.get(path, headers=headers)) == "miss"
    hit = client.get(path, headers=headers)
    assert state(hit) == "hit"
    return hit


def same(a: Any, b: Any) -> None:
    assert a.status_code == b.status_code
    assert a.content == b.content
    assert sorted(a.items()) == sorted(b.items())


# -- served early, and exactly the hit ----------------------------------------------------------


#: The store kinds early hits are proven on. A near cache answers from memory while its
#: channel is healthy; a heartbeat late under load sends a lookup to Redis, which decodes the
#: page anew without its records: that request goes down the stack (and records again).
KINDS = ["memory", "redis", "redis-near"]


@pytest.mark.parametrize("setup", KINDS, indirect=True)
def test_a_hit_is_replayed_before_the_stack_exactly(
    setup: Any, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    client = Client()
    hit = twice(client, "/t/plain/")
    answered = early_answers(monkeypatch)
    fetched = count_calls(monkeypatch, serve, "fetch")
    for _ in range(5):
        same(client.get("/t/plain/"), hit)
    # Each request was answered early or went down the stack, never both.
    assert len(answered) + len(fetched) == 5
    assert len(answered) == 5 if "near" not in request.node.name else len(answered) >= 3
    assert RENDERS["plain"] == 1


@pytest.mark.parametrize("setup", ["redis"], indirect=True)
def test_early_hits_on_redis_look_the_page_up_in_redis(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = Client()
    hit = twice(client, "/t/plain/")
    answered = early_answers(monkeypatch)
    lookups = count_calls(monkeypatch, type(setup), "lookup")
    same(client.get("/t/plain/"), hit)
    assert len(answered) == 1 and len(lookups) == 1  # one lookup, as a hit makes
    invalidate_tags(["http:plain"])
    changed = client.get("/t/plain/")
    assert state(changed) == "miss" and changed.content == b"plain render 2"


# -- fresh --------------------------------------------------------------------------------------


@pytest.mark.parametrize("setup", KINDS, indirect=True)
def test_an_invalidation_in_this_process_reaches_the_next_request(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = Client()
    twice(client, "/t/plain/")
    answered = early_answers(monkeypatch)
    for n in range(2, 12):
        invalidate_tags(["http:plain"])
        after = client.get("/t/plain/")
        assert (state(after), after.content) == ("miss", f"plain render {n}".encode())
        assert client.get("/t/plain/").content == after.content  # the hit that records
        assert client.get("/t/plain/").content == after.content  # early
    assert len(answered) >= 7  # 10 but for a near cache's late heartbeat


WRITER = """
import sys, django
django.setup()
from django.db import transaction
from tests.testapp.models import Item
for line in sys.stdin:
    pk, value = map(int, line.split())
    with transaction.atomic():
        item = Item.objects.get(pk=pk)
        item.value = value
        item.save()
    print("done", flush=True)
"""


@pytest.mark.parametrize("setup", ["redis-near"], indirect=True)
@pytest.mark.parametrize("cut", [False, True], ids=["channel", "channel-cut"])
def test_a_write_in_another_process_reaches_the_next_request(
    setup: Any, monkeypatch: pytest.MonkeyPatch, cut: bool
) -> None:
    """The writer (another process, Redis without a near cache) saves a row and says so through
    a pipe; the next request here must show it, early hits or not. With the near cache's
    channel cut, an early hit looks the page up in Redis: still fresh."""
    pk = Item.objects.create(name="early", value=0).pk
    path = f"/t/early/item/{pk}/"
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), str(root / "example")]),
        "DJANGO_SETTINGS_MODULE": "tests.helpers.child_settings",
        "FRESHCACHE_CHILD_DB": connection.settings_dict["NAME"],
        "FRESHCACHE_CHILD_STORE": store_url("redis"),
    }
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=env,
    )  # fmt: skip
    assert writer.stdin is not None and writer.stdout is not None
    client = Client()
    answered = early_answers(monkeypatch)
    if cut:
        setup.channel.close()
    stale = 0
    try:
        for value in range(1, 16):
            for _ in range(3):  # a miss, the hit that records, an early hit
                stale += client.get(path).content != f"item {value - 1}".encode()
            writer.stdin.write(f"{pk} {value}\n")
            writer.stdin.flush()
            assert writer.stdout.readline().strip() == "done"
            stale += client.get(path).content != f"item {value}".encode()
    finally:
        writer.stdin.close()
        writer.wait(30)
    assert stale == 0
    assert len(answered) >= 10  # the early hits did happen (15 but for late heartbeats)


# -- requests that are never answered from a record ---------------------------------------------

INELIGIBLE = {
    "cookie": ("get", {"headers": {"Cookie": "theme=dark"}}),
    "authorization": ("get", {"headers": {"Authorization": "Basic dTpw"}}),
    "if-none-match": ("get", {"headers": {"If-None-Match": '"x"'}}),
    "if-modified-since": ("get", {"headers": {"If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"}}),  # noqa: E501
    "range": ("get", {"headers": {"Range": "bytes=0-3"}}),
    "head": ("head", {}),
    "post": ("post", {}),
    "other-query": ("get", {"data": {"q": "1"}}),
    "other-host": ("get", {"headers": {"Host": "example.com"}}),
}  # fmt: skip


@pytest.mark.parametrize("kind", list(INELIGIBLE))
def test_a_request_the_record_cannot_stand_for_goes_down_the_stack(
    setup: Any, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    method, options = INELIGIBLE[kind]
    with override_settings(ALLOWED_HOSTS=["testserver", "example.com"]):
        early.forget()
        client = Client()
        twice(client, "/t/echo/")
        answered = early_answers(monkeypatch)
        response = getattr(client, method)("/t/echo/", **options)
        assert answered == [] and response.status_code == 200
        if kind == "other-query":
            assert response.content == b"q=1 full=/t/echo/?q=1"
        if kind == "head":
            assert response.content == b""
        assert client.get("/t/echo/").content == b"q= full=/t/echo/"
        assert len(answered) == 1  # the control: the record is there


def test_an_empty_cookie_header_is_no_cookie(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client = Client()
    hit = twice(client, "/t/plain/")
    answered = early_answers(monkeypatch)
    same(client.get("/t/plain/", headers={"Cookie": ""}), hit)
    assert len(answered) == 1


@pytest.mark.parametrize(
    "path",
    ["/t/form/", "/t/placeholder/", "/t/sets-cookie/"],
    ids=["csrf-token", "placeholder", "set-cookie"],
)
def test_pages_with_anything_per_request_are_never_recorded(
    setup: Any, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    register_placeholder("test-greeting", lambda request: "you")
    answered = early_answers(monkeypatch)
    for _ in range(4):
        assert Client().get(path).status_code == 200  # a new client: no cookie it was given
    assert answered == [] and early._index == {}
    client = Client()
    twice(client, "/t/plain/")
    assert client.get("/t/plain/").status_code == 200 and len(answered) == 1  # the control


def test_a_page_that_read_the_user_is_answered_early_to_anonymous_visitors_only(
    setup: Any, monkeypatch: pytest.MonkeyPatch, django_user_model: Any
) -> None:
    """A template that reads ``user`` accesses the session: for a request with no cookie the
    visitor is anonymous and the session empty, so the record (with ``Vary: Cookie``) stands."""
    anonymous = Client()
    hit = twice(anonymous, "/t/who/")
    answered = early_answers(monkeypatch)
    early_hit = anonymous.get("/t/who/")
    same(early_hit, hit)
    assert len(answered) == 1 and "Cookie" in early_hit["Vary"]
    assert early_hit.content.strip() == b"Hello stranger"
    signed_in = Client()
    signed_in.force_login(django_user_model.objects.create_user("ada", password="x"))
    for _ in range(2):
        assert b"secret-ada-canary" in signed_in.get("/t/who/").content
    assert len(answered) == 1  # the session cookie: never early
    assert anonymous.get("/t/who/").content.strip() == b"Hello stranger"
    assert len(answered) == 2


def test_a_redirect_keeps_its_class(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.http import HttpResponseRedirect

    with override_settings(FRESHCACHE={**settings.FRESHCACHE, "CACHE_STATUSES": [200, 302]}):
        freshcache.store().clear()
        client = Client()
        twice(client, "/t/early/moved/")
        answered = early_answers(monkeypatch)
        moved = client.get("/t/early/moved/")
        assert len(answered) == 1 and isinstance(moved, HttpResponseRedirect)
        assert moved.status_code == 302 and moved.url == "/t/plain/"


def test_a_function_around_the_cached_view_runs_every_time(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    early_views.WRAPS.clear()
    client = Client()
    answered = early_answers(monkeypatch)
    for _ in range(4):
        assert client.get("/t/early/wrapped/").content == b"wrapped page"
    assert early_views.WRAPS == ["/t/early/wrapped/"] * 4 and answered == []
    assert RENDERS["wrapped"] == 1  # hits all the same


def test_varied_headers_join_the_key(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Declared (``vary_on_headers=``) and learned (the response's ``Vary``) headers."""
    client = Client()
    answered = early_answers(monkeypatch)
    for round in range(4):
        if round == 3:  # a learned Vary costs one more render: all are stored by now
            renders, before = RENDERS.copy(), len(answered)
        for lang in ("fr", "de", None):
            headers = {"Accept-Language": lang} if lang else {}
            got = client.get("/t/lang/", headers=headers)
            assert got.content == f"lang={lang or 'none'}".encode()
        for variant in ("a", "b"):
            got = client.get("/t/variant/", headers={"X-Variant": variant})
            assert got.content == f"variant={variant}".encode()
    assert renders == RENDERS and len(answered) - before == 5  # the last round: all early


def test_locale_middleware_answers_each_language_its_own(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    languages = [("en", "English"), ("fr", "French")]
    with override_settings(MIDDLEWARE=stack(LOCALE), LANGUAGES=languages, LANGUAGE_CODE="en"):
        client = Client()
        answered = early_answers(monkeypatch)
        for _ in range(3):
            for lang in ("fr", "en", "fr-CA", None):
                headers = {"Accept-Language": lang} if lang else {}
                got = client.get("/t/early/language/", headers=headers)
                expected = "fr" if lang and lang.startswith("fr") else "en"
                assert got.content == f"language {expected}".encode(), (lang, got.content)
        assert len(answered) >= 6  # the third round, and the second of fr-CA and of no header


def test_the_language_left_active_on_arrival_keys_the_record(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``LocaleMiddleware`` the stack keys a page with whatever language the thread has
    active (a view that activates one leaves it for the next request): so does the record."""
    languages = [("en", "English"), ("fr", "French")]
    with override_settings(LANGUAGES=languages, LANGUAGE_CODE="en"):
        client = Client()
        answered = early_answers(monkeypatch)
        for lang in ("en", "fr", "en", "fr"):
            translation.activate(lang)
            for _ in range(3):
                got = client.get("/t/early/language/")
                assert got.content == f"language {lang}".encode()
        assert len(answered) == 8


@pytest.mark.asyncio
@pytest.mark.parametrize("setup", KINDS, indirect=True)
async def test_asgi_early_hits_take_no_lookup_of_the_stack(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = AsyncClient()
    assert state(await client.get("/t/async/5/")) == "miss"
    hit = await client.get("/t/async/5/")
    assert state(hit) == "hit"
    answered = early_answers(monkeypatch)
    fetched = count_calls(monkeypatch, serve, "afetch")
    for _ in range(4):
        same(await client.get("/t/async/5/"), hit)
    assert len(answered) + len(fetched) == 4 and len(answered) >= 2


# -- configuration ------------------------------------------------------------------------------


def w012(reason: str) -> list[Warning]:
    return [
        Warning(
            f"EarlyHitMiddleware will not be used: {reason}.",
            hint='See docs/pages.md, "Early hits".',
            id="freshcache.W012",
        )
    ]


def test_check_is_silent_when_it_is_used(setup: Any) -> None:
    assert early.check_early_hits() == []


def test_not_first_is_not_used_and_says_why(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with override_settings(MIDDLEWARE=stack(first=False)):
        assert early.check_early_hits() == w012(
            "it must be first in MIDDLEWARE, and "
            "'django.middleware.security.SecurityMiddleware' is above it"
        )
        client = Client()
        answered = early_answers(monkeypatch)
        for _ in range(3):
            assert client.get("/t/plain/").content == b"plain render 1"
        assert answered == []


def test_unknown_middleware_turns_it_off_until_vouched_for(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    answered = early_answers(monkeypatch)
    with override_settings(MIDDLEWARE=stack(STAMP)):
        assert early.check_early_hits() == w012(
            f"MIDDLEWARE has {STAMP!r}, whose per-request work freshcache does not know; if it "
            "does nothing that differs between two cookie-less GETs of one URL, add it to "
            "FRESHCACHE['EARLY_HITS_TRUSTED_MIDDLEWARE']"
        )
        client = Client()
        stamps = [client.get("/t/plain/")["X-Stamp"] for _ in range(3)]
        assert len(set(stamps)) == 3 and answered == []  # the stack ran each time
    config = {**settings.FRESHCACHE, "EARLY_HITS_TRUSTED_MIDDLEWARE": [STAMP]}
    with override_settings(MIDDLEWARE=stack(STAMP), FRESHCACHE=config):
        assert early.check_early_hits() == []
        client = Client()
        stamps = [client.get("/t/plain/")["X-Stamp"] for _ in range(4)]
        # Vouched for: the hit is recorded with its stamp, then replayed (as the project said
        # it may be): each early hit repeats the stamp of an earlier response.
        assert len(set(stamps)) == 4 - len(answered) and len(answered) >= 2


def test_twice_is_refused(setup: Any) -> None:
    with override_settings(MIDDLEWARE=[*stack(), EARLY]):
        assert early.check_early_hits() == w012("it is in MIDDLEWARE more than once")


def test_its_own_module_path_is_checked_the_same(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``freshcache.http.early.EarlyHitMiddleware`` is the same class: every check applies."""
    own = "freshcache.http.early.EarlyHitMiddleware"
    with override_settings(MIDDLEWARE=[own, *stack(STAMP)[1:]]):
        assert early.check_early_hits() == w012(
            f"MIDDLEWARE has {STAMP!r}, whose per-request work freshcache does not know; if it "
            "does nothing that differs between two cookie-less GETs of one URL, add it to "
            "FRESHCACHE['EARLY_HITS_TRUSTED_MIDDLEWARE']"
        )
        client = Client()
        answered = early_answers(monkeypatch)
        stamps = [client.get("/t/plain/")["X-Stamp"] for _ in range(3)]
        assert len(set(stamps)) == 3 and answered == []
    with override_settings(MIDDLEWARE=[PATH_ALIAS_FIRST, own, *stack()[1:]]):
        assert early.check_early_hits() == w012(
            f"it must be first in MIDDLEWARE, and {PATH_ALIAS_FIRST!r} is above it"
        )
    with override_settings(MIDDLEWARE=[own, *stack()]):
        assert early.check_early_hits() == w012("it is in MIDDLEWARE more than once")


PATH_ALIAS_FIRST = "django.middleware.security.SecurityMiddleware"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("django.middleware.gzip.GZipMiddleware",
         "it adds random bytes to each response against BREACH (compress at the proxy instead)"),
        ("django.contrib.sites.middleware.CurrentSiteMiddleware",
         "it reads the Site from the database, which no early key holds"),
        ("django.middleware.cache.UpdateCacheMiddleware", "it is Django's own page cache"),
    ],
)  # fmt: skip
def test_middleware_never_to_skip_turns_it_off_even_when_vouched_for(
    setup: Any, monkeypatch: pytest.MonkeyPatch, name: str, reason: str
) -> None:
    config = {**settings.FRESHCACHE, "EARLY_HITS_TRUSTED_MIDDLEWARE": [name]}
    with override_settings(MIDDLEWARE=stack(name), FRESHCACHE=config):
        assert early.check_early_hits() == w012(
            f"MIDDLEWARE has {name!r}, which an early hit must never skip: {reason}"
        )
        client = Client()
        answered = early_answers(monkeypatch)
        for _ in range(4):
            assert client.get("/t/plain/").content == b"plain render 1"
        assert answered == []


def test_shadow_mode_turns_it_off(setup: Any) -> None:
    with override_settings(FRESHCACHE={**settings.FRESHCACHE, "SHADOW": {"RATE": 0.5}}):
        assert early.check_early_hits() == w012(
            "SHADOW is on: shadow mode checks hits by rendering them again"
        )


def test_disabled_and_bad_settings(setup: Any) -> None:
    with override_settings(FRESHCACHE={**settings.FRESHCACHE, "ENABLED": False}):
        assert early.check_early_hits() == w012("freshcache is disabled")
    bad = {**settings.FRESHCACHE, "EARLY_HITS_TRUSTED_MIDDLEWARE": STAMP}
    with override_settings(MIDDLEWARE=stack(STAMP), FRESHCACHE=bad):
        assert early.check_early_hits() == []  # the E006 says it; caching is off meanwhile
        assert early.why_off() is not None


def test_static_publishing_turns_it_off(setup: Any, tmp_path: Any) -> None:
    edge = {"PUBLISH": {"ROOT": str(tmp_path), "URLS": [r"^/$"]}}
    with override_settings(FRESHCACHE={**settings.FRESHCACHE, "EDGE": edge}):
        assert early.why_off() == "EDGE['PUBLISH'] is on: every hit may publish its page"


# -- faults and bounds --------------------------------------------------------------------------


def test_a_fault_costs_the_early_hit_not_the_answer(
    setup: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client = Client()
    hit = twice(client, "/t/plain/")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("store exploded")

    monkeypatch.setattr(early, "find", broken)
    with caplog.at_level(logging.ERROR, logger="freshcache.http"):
        same(client.get("/t/plain/"), hit)
    assert "early hit failed" in caplog.text


def test_the_index_is_bounded(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(early, "INDEX_SIZE", 3)
    client = Client()
    answered = early_answers(monkeypatch)
    for n in range(8):
        for _ in range(3):
            assert client.get("/t/echo/", {"q": n}).content == f"q={n} full=/t/echo/?q={n}".encode()
        assert len(early._index) <= 3 and len(early._shapes) <= 3
    assert len(answered) == 8


def test_records_per_page_are_bounded(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Query strings the page is not keyed on give one page several early keys: past
    ``PER_PAGE`` records, a request of a new one goes down the stack every time."""
    monkeypatch.setattr(early, "PER_PAGE", 2)
    client = Client()
    answered = early_answers(monkeypatch)
    for _ in range(3):
        for utm in ("a", "b", "c"):
            got = client.get("/t/allow/", {"page": "1", "utm": utm})
            assert got.content == b"page=1"
    # Round 1: a miss, then b and c recorded; rounds 2 and 3: b and c early, a never recorded.
    assert len(answered) == 4


# -- the differential: with the middleware or without, the same responses -----------------------

STEP = st.one_of(
    st.tuples(
        st.sampled_from(["/t/plain/", "/t/echo/", "/t/lang/", "/t/variant/", "/t/sets-cookie/",
                         "/t/who/", "/t/messages/"]),
        st.sampled_from(["get", "head"]),
        st.sampled_from(["", "q=1", "q=2"]),
        st.sampled_from([{}, {"Cookie": "theme=dark"}, {"Accept-Language": "fr"},
                         {"X-Variant": "b"}, {"If-None-Match": '"nope"'}]),
    ),
    st.just(("invalidate",)),
)  # fmt: skip


def _replay(steps: list[Any], with_early: bool) -> list[tuple[Any, ...]]:
    middleware = stack() if with_early else stack()[1:]
    with override_settings(MIDDLEWARE=middleware):
        freshcache.store().clear()
        RENDERS.clear()
        early.forget()
        client = Client()
        seen = []
        for step in steps:
            if step[0] == "invalidate":
                invalidate_tags(["http:plain"])
                continue
            path, method, query, headers = step
            url = f"{path}?{query}" if query else path
            response = getattr(client, method)(url, headers=headers)
            seen.append((response.status_code, response.content, sorted(response.items())))
        return seen


@pytest.mark.parametrize("setup", ["memory"], indirect=True)
@hsettings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(STEP, min_size=1, max_size=14))
def test_with_or_without_the_middleware_every_response_is_the_same(
    setup: Any, steps: list[Any]
) -> None:
    assert _replay(steps, with_early=True) == _replay(steps, with_early=False)


# -- the guide ----------------------------------------------------------------------------------


def _guide_blocks() -> list[dict[str, Any]]:
    """The python blocks of docs/pages.md's "Early hits" section, each run as a settings file."""
    import re

    doc = (Path(__file__).resolve().parents[2] / "docs" / "pages.md").read_text()
    section = doc.split("## Early hits", 1)[1].split("\n## ", 1)[0]
    blocks = []
    for code in re.findall(r"```python\n(.*?)```", section, re.S):
        names: dict[str, Any] = {}
        exec(code, {}, names)  # settings assignments only
        blocks.append(names)
    return blocks


@pytest.mark.parametrize("setup", ["redis-near"], indirect=True)
def test_the_guides_configurations_answer_early(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exactly the MIDDLEWARE and FRESHCACHE shown, the store's URL aside: the test's Redis
    (with the same near cache) stands for ``127.0.0.1:6379/0``."""
    from freshcache.stores import from_url
    from freshcache.stores.near import NearStore

    first, trusted = _guide_blocks()
    url = first["FRESHCACHE"]["STORE"]
    assert trusted["FRESHCACHE"]["STORE"] == url and url.endswith("?near_cache=64mb")
    shown = from_url("default", url)
    try:
        assert isinstance(shown, NearStore) and shown.near.max_bytes == 64 * 2**20
    finally:
        shown.close()
    test_url = store_url("redis-near").replace("near_cache=8mb", "near_cache=64mb")
    middleware = first["MIDDLEWARE"]
    cases = [
        (middleware, {**first["FRESHCACHE"], "STORE": test_url}),
        (
            [*middleware, *trusted["FRESHCACHE"]["EARLY_HITS_TRUSTED_MIDDLEWARE"]],
            {**trusted["FRESHCACHE"], "STORE": test_url, "HEADER": True},
        ),
    ]
    for stack_shown, config in cases:
        with override_settings(MIDDLEWARE=stack_shown, FRESHCACHE=config):
            assert early.check_early_hits() == []
            store = freshcache.store()
            store.clear()
            wait_ready(store)  # type: ignore[arg-type]
            answered = early_answers(monkeypatch)
            client = Client()
            responses = [client.get("/t/plain/") for _ in range(4)]
            assert {r.content for r in responses} == {responses[0].content}
            assert len(answered) >= 1
            if "HEADER" in config:
                assert all(r["X-Powered-By"] == "mysite" for r in responses)
