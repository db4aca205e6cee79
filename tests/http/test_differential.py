"""Issue 10: a response served from the cache is the response the uncached render would give.

For each case (a view wearing one of Django's decorators, a middleware stack above the cache,
``cache_page`` or ``CacheMiddleware``, a sync or async view, a request shape):

- ``M`` is the first request with freshcache on and ``H`` the identical second one: ``H`` must
  be ``M`` exactly (status, reason, body, every header but ``Date``, every cookie morsel, the
  response attributes middleware read), apart from per-request tokens (CSRF, CSP nonces);
- ``U`` is the same request with freshcache off: ``M`` must be ``U``, apart from what freshcache
  adds on purpose (``X-Freshcache``; its ``ETag`` and ``Cache-Control: no-cache`` when the view
  set none). A 304 freshcache answers for its own ETag must be ``U304``: the 304 Django makes of
  the view's 200 (``_not_modified``, attributes kept), through the same middleware;
- with another visitor (another CSRF secret, another raw ``Host`` behind a proxy; any visitor of
  a page with a CSP nonce), ``V`` must be ``U_V``, that visitor's uncached response, and two
  visitors never share a nonce;
- the ``X-Freshcache`` states are the expected ones (``expected``): stored pages are hits the
  second time, and a hit runs no view.

Documented differences allowed (docs/pages.md): a ``TemplateResponse`` is served as an
``HttpResponse`` on hits; a render that read ``request.method`` is not served to HEAD.

Per-request tokens are checked, then masked: see ``tests/http/differential.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.messages import constants
from django.contrib.messages.storage.base import Message
from django.contrib.messages.storage.cookie import CookieStorage
from django.http import HttpRequest
from django.test import override_settings

import freshcache
from tests.http.differential import Allow, Seen, carried_cookies, compare, see, send
from tests.http_app.diff_views import BY_NAME, DJANGO_6, NOT_MODIFIED, RENDERS, SPECS, Spec

SECURITY = "django.middleware.security.SecurityMiddleware"
SESSION = "django.contrib.sessions.middleware.SessionMiddleware"
COMMON = "django.middleware.common.CommonMiddleware"
CSRF = "django.middleware.csrf.CsrfViewMiddleware"
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"
MESSAGES = "django.contrib.messages.middleware.MessageMiddleware"
XFRAME = "django.middleware.clickjacking.XFrameOptionsMiddleware"
GZIP = "django.middleware.gzip.GZipMiddleware"
CONDITIONAL = "django.middleware.http.ConditionalGetMiddleware"
LOCALE = "django.middleware.locale.LocaleMiddleware"
CACHE = "freshcache.middleware.CacheMiddleware"
STARTPROJECT = [SECURITY, SESSION, COMMON, CSRF, AUTH, MESSAGES, XFRAME]
STACKS = {
    "startproject": STARTPROJECT,
    "everything": [
        SECURITY,
        GZIP,
        CONDITIONAL,
        SESSION,
        LOCALE,
        COMMON,
        CSRF,
        AUTH,
        MESSAGES,
        XFRAME,
    ],
    "gzip+conditional": [GZIP, CONDITIONAL, COMMON],
    "csp-django": [*STARTPROJECT, "django.middleware.csp.ContentSecurityPolicyMiddleware"],
    "csp-django-csp": [*STARTPROJECT, "csp.middleware.CSPMiddleware"],
}


def _stack_settings() -> dict[str, dict[str, Any]]:
    from csp.constants import NONCE

    found: dict[str, dict[str, Any]] = {
        # Messages in a cookie only: a render that reads no messages deletes the cookie.
        "everything": {"MESSAGE_STORAGE": "django.contrib.messages.storage.cookie.CookieStorage"},
        "csp-django-csp": {
            "CONTENT_SECURITY_POLICY": {"DIRECTIVES": {"script-src": ["'self'", NONCE]}}
        },
    }
    if DJANGO_6:
        from django.utils.csp import CSP

        found["csp-django"] = {"SECURE_CSP": {"script-src": [CSP.SELF, CSP.NONCE]}}
    return found


STACK_SETTINGS = _stack_settings()
NEEDS_DJANGO_6 = pytest.mark.skipif(not DJANGO_6, reason="django.middleware.csp is Django 6.0+")
SECRET_A, SECRET_B = "A1b2C3d4" * 4, "Z9y8X7w6" * 4
PROXY_HOST = "proxy.example.com"
FRESHCACHE_ON = {"STORE": "memory://", "HEADER": True}
FRESHCACHE_OFF = {**FRESHCACHE_ON, "ENABLED": False}


def _messages_cookie() -> str:
    storage = CookieStorage(HttpRequest())
    return str(storage._encode([Message(constants.INFO, "Saved.")]))


@dataclass(frozen=True)
class Shape:
    name: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    query: str = ""
    #: A GET stores the page first (HEAD and conditional requests are served stored pages).
    primed: bool = False
    #: ``If-None-Match``: the ETag of the previous response, with the cookies it set.
    conditional: bool = False
    settings: dict[str, Any] = field(default_factory=dict)
    #: Another visitor: these headers/cookies instead (``None``: no second visitor).
    other: dict[str, dict[str, str]] | None = None


HOST = {"host": "testserver"}
SHAPES = [
    Shape("get", headers=HOST),
    Shape("head", method="HEAD", headers=HOST, primed=True),
    Shape("if-none-match", headers=HOST, primed=True, conditional=True),
    Shape("gzip", headers={**HOST, "accept-encoding": "gzip, deflate"}),
    Shape("fr", headers={**HOST, "accept-language": "fr"}),
    Shape(
        "csrf-cookie",
        headers=HOST,
        cookies={"csrftoken": SECRET_A},
        other={"cookies": {"csrftoken": SECRET_B}},
    ),
    Shape(
        "forwarded-host",
        headers={**HOST, "x-forwarded-host": PROXY_HOST},
        settings={"USE_X_FORWARDED_HOST": True},
        other={"headers": {"host": "backend.internal", "x-forwarded-host": PROXY_HOST}},
    ),
    Shape("unknown-param", headers=HOST, query="?fbclid=IwAR0xyz"),
    Shape("messages-cookie", headers=HOST, cookies={"messages": "<filled in>"}),
]
BY_SHAPE = {shape.name: shape for shape in SHAPES}


@dataclass(frozen=True)
class Case:
    view: str
    stack: str
    mode: str  # "decorator" (cache_page) or "middleware" (CacheMiddleware)
    is_async: bool
    shape: str

    @property
    def id(self) -> str:
        kind = "async" if self.is_async else "sync"
        return f"{self.stack}-{self.mode}-{kind}-{self.view}-{self.shape}"


def _runs(spec: Spec, stack: str, is_async: bool) -> bool:
    if spec.stacks is not None and stack not in spec.stacks:
        return False
    return spec.async_ok or not is_async


def _param(case: Case) -> Any:
    django_6 = case.stack == "csp-django" or BY_NAME[case.view].needs_django6
    marks = [NEEDS_DJANGO_6] if django_6 else []
    return pytest.param(case, id=case.id, marks=marks)


def _cases(stacks: list[str], shapes: list[str], kinds: list[bool]) -> list[Any]:
    return [
        _param(Case(spec.name, stack, mode, is_async, shape))
        for stack in stacks
        for mode in ("decorator", "middleware")
        for is_async in kinds
        for spec in SPECS
        if _runs(spec, stack, is_async)
        for shape in shapes
    ]


#: Every view on every stack, both ways, sync and async: the plain GET.
VIEW_CASES = _cases(list(STACKS), ["get"], [False, True])
OTHER_SHAPES = [s.name for s in SHAPES if s.name != "get"]
#: Every other request shape: sync on every stack, async on the two common ones.
SHAPE_CASES = _cases(list(STACKS), OTHER_SHAPES, [False]) + _cases(
    ["startproject", "everything"], OTHER_SHAPES, [True]
)


def expected(spec: Spec, shape: Shape, stack: str, mode: str) -> set[tuple[str, str]]:
    """The ``X-Freshcache`` states ``(M, H)`` a correct cache shows."""
    if not spec.stored:
        return {("bypass", "bypass")}
    if shape.method == "HEAD" and reads_method(spec, stack, mode):
        return {("bypass", "bypass")}  # HEAD may differ from GET: never served a GET page
    if shape.name == "messages-cookie" and spec.reads_messages and MESSAGES in STACKS[stack]:
        return {("bypass", "bypass")}  # it reads a cookie that is there, and not keyed
    if shape.conditional and spec.conditional:
        return {("bypass", "bypass")}  # it reads If-None-Match, absent when it was stored
    first = "hit" if shape.primed else "miss"
    return {(first, "hit")}


def expected_visitor(spec: Spec, shape: Shape, stack: str, mode: str) -> set[str]:
    """The ``X-Freshcache`` state of another visitor's request, after ``M`` and ``H``."""
    states = {h for _, h in expected(spec, shape, stack, mode)}
    if states == {"bypass"}:
        return states
    if shape.name == "forwarded-host":
        # The raw Host is in the key: another one is another page (learning its Vary first).
        return {"bypass"} if spec.learns_vary else {"miss"}
    if shape.name == "csrf-cookie" and spec.name == "vary_on_cookie":
        return {"miss"}  # the whole Cookie header is in the key
    return states  # the CSRF secret is not in the key: one page for every visitor


def reads_method(spec: Spec, stack: str, mode: str) -> bool:
    """The render reads ``request.method``: the view itself; ``CsrfViewMiddleware.process_view``,
    which runs inside the render under ``CacheMiddleware`` (not for ``@csrf_exempt`` views);
    the CSRF decorators, unless ``CsrfViewMiddleware`` did their work before (docs/pages.md)."""
    csrf = CSRF in STACKS[stack]
    if mode == "middleware" and csrf and spec.name != "csrf_exempt":
        return True
    csrf_decorator = spec.name in ("ensure_csrf_cookie", "requires_csrf_token")
    return spec.reads_method or (csrf_decorator and not csrf)


@pytest.fixture(scope="module", autouse=True)
def diff_site() -> Iterator[None]:
    processors = [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]
    if DJANGO_6:
        processors.append("django.template.context_processors.csp")
    templates = [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "APP_DIRS": True,
            "OPTIONS": {"context_processors": processors},
        }
    ]
    with override_settings(
        ROOT_URLCONF="tests.http_app.diff_urls",
        ALLOWED_HOSTS=["testserver", PROXY_HOST],
        TEMPLATES=templates,
    ):
        yield


@pytest.fixture
def diff_store() -> Iterator[None]:
    """``page_store`` without the database: these views read none, and flushing it after each
    of the ~3500 cases would take half an hour. The memory store, emptied, ``X-Freshcache`` on."""
    with override_settings(FRESHCACHE=FRESHCACHE_ON):
        freshcache.store().clear()
        yield
        freshcache.store().clear()


@dataclass
class Visit:
    """Requests to one URL of a case; ``renders`` counts the view's renders per request."""

    url: str
    is_async: bool
    spec: Spec
    csrf: bool  # CsrfViewMiddleware is installed
    renders: dict[int, int] = field(default_factory=dict)

    def get(self, method: str, headers: dict[str, str], cookies: dict[str, str]) -> Any:
        before = RENDERS[self.spec.name]
        response = send(
            self.url, is_async=self.is_async, method=method, headers=headers, cookies=cookies
        )
        self.renders[id(response)] = RENDERS[self.spec.name] - before
        return response

    def see(self, label: str, response: Any, sent: dict[str, str]) -> Seen:
        seen = see(label, response, sent, self.spec.own_etag, self.csrf)
        rendered = self.renders.get(id(response), 0)
        if seen.state is None and response.status_code == 304:
            # ConditionalGetMiddleware answered the 304 with a response of its own.
            seen.state = "bypass" if rendered else "hit"
        if seen.state == "hit" and rendered:
            seen.problems.append(f"{label}: X-Freshcache says hit, but the view ran")
        return seen


def run(case: Case) -> None:
    spec, shape = BY_NAME[case.view], BY_SHAPE[case.shape]
    form = ("d" if case.mode == "decorator" else "m") + ("a" if case.is_async else "")
    csrf = CSRF in STACKS[case.stack]
    visit = Visit(f"/{form}/{spec.name}/{shape.query}", case.is_async, spec, csrf)
    get, method = visit.get, shape.method
    cookies = dict(shape.cookies)
    if "messages" in cookies:
        cookies["messages"] = _messages_cookie()
    middleware = STACKS[case.stack] + ([CACHE] if case.mode == "middleware" else [])
    extra = {**STACK_SETTINGS.get(case.stack, {}), **shape.settings}
    headers_v, cookies_v, v = None, None, None
    with override_settings(MIDDLEWARE=middleware, **extra):
        # Freshcache on: learn the Vary, store the page a HEAD or a conditional GET is served.
        warm = None
        for _ in range(int(spec.learns_vary) + int(shape.primed)):
            warm = get("GET", shape.headers, cookies)
        headers_m, cookies_m = dict(shape.headers), dict(cookies)
        if shape.conditional:
            assert warm is not None
            cookies_m.update(carried_cookies(warm))
            headers_m["if-none-match"] = warm.get("ETag") or '"none"'
        m, h = get(method, headers_m, cookies_m), get(method, headers_m, cookies_m)
        if shape.other is not None or spec.nonce:  # another visitor
            other = shape.other or {}
            headers_v = {**headers_m, **other.get("headers", {})}
            cookies_v = {**cookies_m, **other.get("cookies", {})}
            v = get(method, headers_v, cookies_v)
        # Freshcache off: the view's own responses (a new, empty store when it comes back on).
        with override_settings(FRESHCACHE=FRESHCACHE_OFF):
            headers_u, cookies_u = dict(shape.headers), dict(cookies)
            if shape.conditional:
                first = get("GET", shape.headers, cookies)
                cookies_u.update(carried_cookies(first))
                headers_u["if-none-match"] = first.get("ETag") or headers_m["if-none-match"]
            u = get(method, headers_u, cookies_u)
            u_v = None if v is None else get(method, headers_v, cookies_v)
            if shape.conditional:  # the 304 the view would answer if it knew our ETag
                NOT_MODIFIED["on"] = True
                try:
                    u304 = get(method, headers_u, cookies_u)
                    u_v304 = None if v is None else get(method, headers_v, cookies_v)
                finally:
                    NOT_MODIFIED["on"] = False

    seen_u, seen_m = visit.see("U", u, cookies_u), visit.see("M", m, cookies_m)
    seen_h = visit.see("H", h, cookies_m)
    problems: list[str] = []
    states = (seen_m.state, seen_h.state)
    allowed = expected(spec, shape, case.stack, case.mode)
    if states not in allowed:
        problems.append(
            f"X-Freshcache (M, H) = ({m.get('X-Freshcache')!r}, {h.get('X-Freshcache')!r}), "
            f"expected one of {sorted(allowed)}"
        )
    if u.status_code not in (200, 304, 405):
        problems.append(f"U itself is a {u.status_code}: {u.content[:200]!r}")
    seen = [seen_u, seen_m, seen_h]
    problems += compare(seen_h, seen_m)
    if ours_304(shape, seen_m):
        seen_u = visit.see("U304", u304, cookies_u)
        seen.append(seen_u)
    problems += compare(seen_m, seen_u, allowance(spec, seen_m))
    if v is not None:
        assert u_v is not None and cookies_v is not None
        seen_v, seen_uv = visit.see("V", v, cookies_v), visit.see("U_V", u_v, cookies_v)
        allowed_v = expected_visitor(spec, shape, case.stack, case.mode)
        if seen_v.state not in allowed_v:
            problems.append(
                f"X-Freshcache of another visitor V = {v.get('X-Freshcache')!r}, expected one of "
                f"{sorted(allowed_v)}"
            )
        if ours_304(shape, seen_v):
            seen_uv = visit.see("U_V304", u_v304, cookies_v)
        seen += [seen_v, seen_uv]
        problems += compare(seen_v, seen_uv, allowance(spec, seen_v))
        nonces = [s.nonce for s in (seen_m, seen_h, seen_v) if s.nonce]
        if len(set(nonces)) != len(nonces):
            problems.append(f"CSP nonce shared between responses M, H, V: {nonces}")
    for s in seen:
        problems += s.problems
    if problems:
        pytest.fail(f"{case.id}:\n- " + "\n- ".join(problems), pytrace=False)


def ours_304(shape: Shape, served: Seen) -> bool:
    """A 304 freshcache answered for its own ETag: it stands for the view's 304 (``U304``)."""
    return shape.conditional and served.state == "hit" and served.status == 304


def allowance(spec: Spec, served: Seen) -> Allow:
    """What freshcache may add to the view's own response: only to pages it stores."""
    ours = served.state in ("miss", "hit")
    return Allow(etag=ours and not spec.own_etag, cache_control="no-cache" if ours else None)


@pytest.mark.parametrize("case", VIEW_CASES)
def test_a_hit_is_the_uncached_response_for_every_view(diff_store: None, case: Case) -> None:
    run(case)


@pytest.mark.parametrize("case", SHAPE_CASES)
def test_a_hit_is_the_uncached_response_for_every_request_shape(
    diff_store: None, case: Case
) -> None:
    run(case)
