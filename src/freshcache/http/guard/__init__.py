"""Watch what a view reads from the request while a cacheable response renders.

A cached page may only depend on what its key covers. While a page (or a ``{% cachefresh %}``
fragment) renders, freshcache replaces a few attributes of the request with small proxies
(``COOKIES``, ``META``/``environ``, ``headers``, ``GET``, ``session``, ``user``/``auser``) and
restores the originals afterwards. Every read goes through a :class:`Guard`:

* a read of something the key covers is free;
* a read of something *present* that the key does not cover (a cookie, a header, a query
  parameter outside the allowlist, a non-empty session, a logged-in user) marks the current
  scope uncacheable: the response is served but not stored (cache poisoning and cross-user
  leaks are ruled out by construction, reliability notes S1/S2);
* a read of something *absent* (``request.COOKIES.get("messages")`` with no such cookie) is
  recorded as a condition of the stored value: a later request for which it is present does not
  get the stored value but a fresh, uncached render. This keeps the most common pages cacheable
  for anonymous visitors (``{% if user.is_authenticated %}``, a messages block) without ever
  showing one visitor's state to another.

The CSRF machinery is exempt (``META["CSRF_COOKIE"]``, the CSRF cookie): its token is replaced by
a placeholder before storing (see ``freshcache.http.placeholders``).

Guards nest: a fragment inside a cached page pushes its own guard, which covers nothing. The
proxies are installed once per request, by the outermost guard, and consult the whole stack.

The package: ``reads.py`` holds the :class:`Guard` and judges each read against the stack,
``mappings.py`` the guarded ``COOKIES``/``META``/``headers``/``GET``, ``identity.py`` the guarded
``session``/``user``/``auser``; this module installs them (:func:`guarded`) and checks a stored
value's conditions against a later request (:func:`conditions_violated`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from django.http import HttpRequest

# Every name the module had before it became a package stays importable from here: serve.py
# imports _keyed_meta, and pickles name _query_dict by this path.
from .identity import _SESSION_READS as _SESSION_READS
from .identity import _check_user as _check_user
from .identity import _evaluate as _evaluate
from .identity import _guard_auser as _guard_auser
from .identity import _GuardedMessages as _GuardedMessages
from .identity import _GuardedSession as _GuardedSession
from .identity import _GuardedUser as _GuardedUser
from .identity import _session_cookie_present as _session_cookie_present
from .mappings import _ALWAYS_META as _ALWAYS_META
from .mappings import _GuardedCookies as _GuardedCookies
from .mappings import _GuardedHeaders as _GuardedHeaders
from .mappings import _GuardedMeta as _GuardedMeta
from .mappings import _GuardedQueryDict as _GuardedQueryDict
from .mappings import _keyed_meta as _keyed_meta
from .mappings import _query_dict as _query_dict
from .method import _GuardedMethod as _GuardedMethod
from .reads import (
    _MISSING,
    _RAW_ATTR,
    _STACK_ATTR,
    ANY,
    Guard,
    UncacheableWarning,
    raw,
    reason_text,
)
from .reads import _read as _read
from .reads import _refuse as _refuse
from .reads import _stack as _stack
from .reads import logger as logger

__all__ = ["Guard", "UncacheableWarning", "guarded", "raw", "reason_text"]

# Attributes replaced while a guard is installed.
_ATTRS = ("META", "environ", "COOKIES", "GET", "headers", "session", "user", "auser", "method")


def _install(request: HttpRequest) -> None:
    saved = {name: request.__dict__.get(name, _MISSING) for name in _ATTRS}
    # Evaluate the real values before replacing them (cached properties).
    meta = request.META
    saved["META"] = meta
    saved["COOKIES"] = request.COOKIES
    saved["GET"] = request.GET
    saved["headers"] = request.headers
    request.__dict__[_RAW_ATTR] = saved
    guarded_meta = _GuardedMeta(request, meta)
    request.__dict__["META"] = guarded_meta
    if saved["environ"] is not _MISSING and saved["environ"] is meta:
        request.__dict__["environ"] = guarded_meta
    request.__dict__["COOKIES"] = _GuardedCookies(request, saved["COOKIES"])
    request.__dict__["GET"] = _GuardedQueryDict.wrap(request, saved["GET"])
    request.__dict__["headers"] = _GuardedHeaders(request, saved["headers"], meta)
    if saved["session"] is not _MISSING:
        request.__dict__["session"] = _GuardedSession(request, saved["session"])
    # Wrapped even when the page's key covers the user: a fragment inside it does not.
    user = saved["user"]
    if user is not _MISSING:
        request.__dict__["user"] = _GuardedUser(request, user)
    if saved["auser"] is not _MISSING:
        request.__dict__["auser"] = _guard_auser(request, saved["auser"])
    if isinstance(saved["method"], str):
        request.__dict__["method"] = _GuardedMethod(request, saved["method"])


def _uninstall(request: HttpRequest) -> None:
    saved = request.__dict__.pop(_RAW_ATTR)
    for name in _ATTRS:
        value = saved[name]
        if name in ("META", "COOKIES", "GET", "headers") or value is not _MISSING:
            request.__dict__[name] = value
        else:
            request.__dict__.pop(name, None)
    if saved["environ"] is _MISSING:
        request.__dict__.pop("environ", None)


@contextmanager
def guarded(request: HttpRequest, guard: Guard) -> Iterator[Guard]:
    """Install ``guard`` on ``request`` for the duration of the block (nesting is allowed)."""
    stack = request.__dict__.setdefault(_STACK_ATTR, [])
    stack.append(guard)
    outermost = len(stack) == 1
    if outermost:
        _install(request)
    try:
        yield guard
    finally:
        stack.pop()
        if outermost:
            _uninstall(request)
            request.__dict__.pop(_STACK_ATTR, None)


def record_absent(request: HttpRequest, absent: Iterable[tuple[str, str]]) -> None:
    """Replay the conditions of a stored value served inside an enclosing guarded render."""
    for source, name in absent:
        _read(request, source, name, False)


def conditions_violated(request: HttpRequest, absent: Any) -> str | None:
    """Return why ``request`` may not be served a value stored under ``absent`` conditions."""
    # Each source is read only if a condition names it: on a hit, ``request.GET`` would build
    # a QueryDict (and ``COOKIES`` parse the header) that nothing else may need.
    for source, name in absent:
        if source in ("cookie", "anonuser"):
            cookies = raw(request, "COOKIES")
            present = bool(cookies) if name == ANY else name in cookies
        elif source == "meta":
            present = True if name == ANY else name in raw(request, "META")
        elif source == "query":
            get = raw(request, "GET")
            present = bool(get) if name == ANY else name in get
        elif source == "rawquery":
            present = raw(request, "META").get("QUERY_STRING", "") != name
        elif source == "nonce":
            from ..carry import csp_nonce

            now = "generated" if csp_nonce(request) is not None else "ungenerated"
            if now != name:
                return "the CSP nonce was " + name + " when the entry was stored"
            continue
        elif source == "method":
            if str(raw(request, "method")) != name:
                return "the stored render read the request method, and this is not " + name
            continue
        else:
            present = True
        if present:
            if source == "rawquery":
                return "the raw query string differs from the stored render's"
            label = "a cookie" if name == ANY else repr(name)
            return reason_text(f"request has {source} {label}, absent when the entry was stored")
    return None
