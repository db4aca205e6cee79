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
"""

from __future__ import annotations

import logging
import secrets
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.http import HttpRequest, QueryDict
from django.utils.functional import SimpleLazyObject, empty

from ..scope import current_scope, mark_uncacheable

__all__ = ["Guard", "UncacheableWarning", "guarded", "raw", "reason_text"]

logger = logging.getLogger("freshcache.http")

_MISSING = object()
# Attributes replaced while a guard is installed.
_ATTRS = ("META", "environ", "COOKIES", "GET", "headers", "session", "user", "auser")
_STACK_ATTR = "_freshcache_guards"
_RAW_ATTR = "_freshcache_raw"
ANY = "*"  # the name recorded when a whole mapping is enumerated


class UncacheableWarning(UserWarning):
    """With ``DEBUG``, warns that a render read request input outside its key."""


def reason_text(text: str) -> str:
    """Make ``text`` safe for a response header: printable ASCII, bounded."""
    clean = "".join(c if " " <= c <= "~" else "?" for c in text)
    return clean[:200]


def raw(request: HttpRequest, attr: str) -> Any:
    """Return the request's real ``attr`` (``COOKIES``, ``META``, ``GET``…), never a proxy."""
    saved = getattr(request, _RAW_ATTR, None)
    if saved is not None and attr in saved and saved[attr] is not _MISSING:
        return saved[attr]
    return getattr(request, attr)


def _session_cookie_present(request: HttpRequest) -> bool:
    return settings.SESSION_COOKIE_NAME in raw(request, "COOKIES")


class Guard:
    """What one cacheable render may read from the request, and what it did read."""

    def __init__(
        self,
        request: HttpRequest,
        *,
        query_keyed: frozenset[str] | None = frozenset(),
        query_all: bool = False,
        raw_query_ok: bool = False,
        unkeyed_params: frozenset[str] = frozenset(),
        meta_keyed: frozenset[str] = frozenset(),
        user_keyed: bool = False,
        defer_headers: bool = False,
    ) -> None:
        self.request = request
        self.query_all = query_all
        self.query_keyed = query_keyed or frozenset()
        self.raw_query_ok = raw_query_ok
        self.unkeyed_params = unkeyed_params
        self.meta_keyed = meta_keyed
        self.user_keyed = user_keyed
        #: Headers read but not keyed are remembered instead of refusing (first-level render of
        #: a page whose Vary headers are not known yet); the page decides at the end.
        self.defer_headers = defer_headers
        self.deferred: set[str] = set()
        #: ``(source, name)`` pairs read while absent: they must stay absent for a hit.
        self.absent: set[tuple[str, str]] = set()
        #: First reason this render must not be stored, as seen by this guard.
        self.refused: str | None = None
        #: Whether ``get_token()`` (or anything reading ``META["CSRF_COOKIE"]``) ran.
        self.csrf_used = False
        #: Random per render; custom placeholders are written as markers containing it.
        self.nonce = secrets.token_hex(8)
        self.markers: dict[str, str] = {}
        self.scope = current_scope()

    # -- what is keyed -------------------------------------------------------------------------
    def covers(self, source: str, name: str) -> bool:
        if source == "query":
            if self.query_all:
                return True
            if name == ANY:
                # Enumerating the parameters is fine when every parameter present is keyed.
                return bool(self.query_keyed) and not self.unkeyed_params
            return name in self.query_keyed
        if source == "meta":
            return name in self.meta_keyed
        if source == "user":
            return self.user_keyed
        return False

    def defer(self, source: str, name: str) -> bool:
        if (
            self.defer_headers
            and source == "meta"
            and name.startswith("HTTP_")
            and current_scope() is self.scope
        ):
            self.deferred.add(name)
            return True
        return False

    def marker(self, name: str) -> str:
        """Return the marker text standing for placeholder ``name`` in this render's output."""
        index = len(self.markers)
        text = f"fcslot{self.nonce}x{index}y"
        self.markers[text] = name
        return text

    def refuse(self, reason: str) -> None:
        if self.refused is None:
            self.refused = reason


def _stack(request: HttpRequest) -> list[Guard]:
    return request.__dict__.get(_STACK_ATTR) or []


def _read(request: HttpRequest, source: str, name: str, present: bool, what: str = "") -> None:
    """Record that the render read ``name`` from ``source`` (``present`` or not)."""
    stack = _stack(request)
    if not stack or getattr(request, "_freshcache_suspended", False):
        return
    uncovered = [g for g in stack if not g.covers(source, name)]
    if not uncovered:
        return
    if not present:
        for guard in uncovered:
            guard.absent.add((source, name))
        return
    if all(g.defer(source, name) for g in uncovered):
        return
    label = what or (f"{source} {name!r}" if name != ANY else f"every {source} value")
    reason = reason_text(f"read {label}, which is not part of the key")
    for guard in uncovered:
        guard.refuse(reason)
    mark_uncacheable(reason)
    if settings.DEBUG:
        warnings.warn(f"freshcache: not stored: {reason}", UncacheableWarning, stacklevel=4)
        logger.info("not stored: %s (%s)", reason, request.path)


def _refuse(request: HttpRequest, reason: str) -> None:
    stack = _stack(request)
    if not stack:
        return
    for guard in stack:
        guard.refuse(reason)
    mark_uncacheable(reason)


# -- proxies ----------------------------------------------------------------------------------
class _GuardedCookies(dict[str, str]):
    """``request.COOKIES``: a real ``dict`` (``json.dumps``, ``isinstance``, ``|`` and ``pop``
    work as on Django's), whose every way of reading reports what it read. Writes go to the
    request's real dict too, so they outlive the render. The dict holds the real cookies, so a C
    extension that reads a dict's storage directly gets the right values (but is not seen)."""

    def __init__(self, request: HttpRequest, real: dict[str, str]) -> None:
        super().__init__(real)
        self._request = request
        self._real = real

    def _check(self, name: object) -> None:
        if isinstance(name, str) and name != settings.CSRF_COOKIE_NAME:  # the CSRF placeholder
            _read(self._request, "cookie", name, dict.__contains__(self, name))

    def _all(self) -> None:
        _read(self._request, "cookie", ANY, dict.__len__(self) > 0)

    def __getitem__(self, name: str) -> str:
        self._check(name)
        return dict.__getitem__(self, name)

    def get(self, name: str, default: Any = None) -> Any:
        self._check(name)
        return dict.get(self, name, default)

    def __contains__(self, name: object) -> bool:
        self._check(name)
        return dict.__contains__(self, name)

    def __iter__(self) -> Iterator[str]:
        self._all()
        return dict.__iter__(self)

    def __reversed__(self) -> Iterator[str]:
        self._all()
        return dict.__reversed__(self)

    def __len__(self) -> int:
        self._all()
        return dict.__len__(self)

    def keys(self) -> Any:
        self._all()
        return dict.keys(self)

    def items(self) -> Any:
        self._all()
        return dict.items(self)

    def values(self) -> Any:
        self._all()
        return dict.values(self)

    def copy(self) -> dict[str, str]:
        self._all()
        return dict(dict.items(self))

    def __repr__(self) -> str:
        self._all()
        return dict.__repr__(self)

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        self._all()
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        self._all()
        return dict.__ne__(self, other)

    __hash__ = None

    def __or__(self, other: Any) -> Any:
        self._all()
        return dict(dict.items(self)) | other

    def __ror__(self, other: Any) -> Any:
        self._all()
        return other | dict(dict.items(self))

    def __reduce__(self) -> Any:  # pickle and copy: a plain dict
        self._all()
        return (dict, (dict(dict.items(self)),))

    def __reduce_ex__(self, protocol: Any) -> Any:
        return self.__reduce__()

    # -- writes: to both dicts; what a write reveals (presence, the old value) is a read ------

    def __setitem__(self, name: str, value: str) -> None:
        dict.__setitem__(self, name, value)
        self._real[name] = value

    def __delitem__(self, name: str) -> None:
        self._check(name)
        dict.__delitem__(self, name)
        self._real.pop(name, None)

    def pop(self, name: str, *default: Any) -> Any:
        self._check(name)
        self._real.pop(name, None)
        return dict.pop(self, name, *default)

    def popitem(self) -> tuple[str, str]:
        self._all()
        name, value = dict.popitem(self)
        self._real.pop(name, None)
        return name, value

    def setdefault(self, name: str, default: Any = None) -> Any:
        self._check(name)
        self._real.setdefault(name, default)
        return dict.setdefault(self, name, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        new = dict(*args, **kwargs)
        dict.update(self, new)
        self._real.update(new)

    def __ior__(self, other: Any) -> Any:
        self.update(other)
        return self

    def clear(self) -> None:
        dict.clear(self)
        self._real.clear()


# META names that are part of every page key, or carry no request data.
_ALWAYS_META = frozenset(
    {
        "REQUEST_METHOD",
        "PATH_INFO",
        "SCRIPT_NAME",
        "HTTP_HOST",
        "SERVER_NAME",
        "SERVER_PORT",
        "wsgi.url_scheme",
        "wsgi.input",
        "wsgi.errors",
        "wsgi.version",
        "wsgi.multithread",
        "wsgi.multiprocess",
        "wsgi.run_once",
        "wsgi.file_wrapper",
        "CSRF_COOKIE_NEEDS_UPDATE",
        "CONTENT_LENGTH",  # a GET with a body bypasses the cache before rendering
    }
)


def _keyed_meta(extra: frozenset[str]) -> frozenset[str]:
    names = set(_ALWAYS_META) | set(extra)
    if settings.USE_X_FORWARDED_HOST:
        names.add("HTTP_X_FORWARDED_HOST")
    if settings.USE_X_FORWARDED_PORT:
        names.add("HTTP_X_FORWARDED_PORT")
    if settings.SECURE_PROXY_SSL_HEADER:
        names.add(settings.SECURE_PROXY_SSL_HEADER[0])
    return frozenset(names)


class _GuardedMeta(MutableMapping[str, Any]):
    """``request.META``: reads are checked, writes go to the real dict (``get_token`` writes)."""

    def __init__(self, request: HttpRequest, real: dict[str, Any]) -> None:
        self._request = request
        self._real = real

    def _check(self, name: str) -> None:
        if name == "CSRF_COOKIE":
            for guard in _stack(self._request):
                guard.csrf_used = True
            return
        if name == "QUERY_STRING":
            stack = _stack(self._request)
            value = self._real.get(name, "")
            if stack and not all(g.raw_query_ok for g in stack) and value:
                _refuse(self._request, "read the raw query string, which differs from its key form")
            else:
                # Requests sharing the key may order or encode it differently: serve the stored
                # value only to requests whose raw query string is exactly this one.
                for guard in stack:
                    guard.absent.add(("rawquery", value))
            return
        _read(self._request, "meta", name, name in self._real, what=f"header {name!r}")

    def __getitem__(self, name: str) -> Any:
        self._check(name)
        return self._real[name]

    def get(self, name: str, default: Any = None) -> Any:
        self._check(name)
        return self._real.get(name, default)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self._check(name)
        return name in self._real

    def __setitem__(self, name: str, value: Any) -> None:
        if name == "CSRF_COOKIE":
            self._check(name)
        self._real[name] = value

    def __delitem__(self, name: str) -> None:
        del self._real[name]

    def __iter__(self) -> Iterator[str]:
        _read(self._request, "meta", ANY, True, what="every header")
        return iter(self._real)

    def __len__(self) -> int:
        # The count depends on which headers were sent (also bool(request.META)).
        _read(self._request, "meta", ANY, True, what="every header")
        return len(self._real)

    def copy(self) -> dict[str, Any]:
        _read(self._request, "meta", ANY, True, what="every header")
        return dict(self._real)


class _GuardedHeaders(Mapping[str, str]):
    """``request.headers``, checked through the ``META`` names it maps to."""

    def __init__(self, request: HttpRequest, real: Mapping[str, str], meta: dict[str, Any]) -> None:
        self._request = request
        self._real = real
        self._meta = meta

    def _check(self, header: str) -> None:
        from .keys import header_meta_name

        name = header_meta_name(header)
        _read(self._request, "meta", name, name in self._meta, what=f"header {header!r}")

    def __getitem__(self, header: str) -> str:
        self._check(header)
        return self._real[header]

    def get(self, header: str, default: Any = None) -> Any:
        self._check(header)
        return self._real.get(header, default)

    def __contains__(self, header: object) -> bool:
        if isinstance(header, str):
            self._check(header)
        return header in self._real

    def __iter__(self) -> Iterator[str]:
        _read(self._request, "meta", ANY, True, what="every header")
        return iter(self._real)

    def __len__(self) -> int:
        _read(self._request, "meta", ANY, True, what="every header")
        return len(self._real)

    def copy(self) -> _GuardedHeaders:
        # Django's HttpHeaders.copy() returns the (immutable) mapping itself; so do we, and
        # reads through the copy stay tracked.
        return self


class _GuardedQueryDict(QueryDict):
    """``request.GET``: a read-only copy whose accessors report what they read."""

    _fc_request: HttpRequest

    @classmethod
    def wrap(cls, request: HttpRequest, real: QueryDict) -> _GuardedQueryDict:
        new = cls(mutable=True, encoding=real.encoding)
        for key, values in real.lists():
            new.setlist(key, list(values))
        new._mutable = False
        new._fc_request = request
        return new

    def _name(self, name: Any) -> None:
        if isinstance(name, str):
            _read(self._fc_request, "query", name, dict.__contains__(self, name))

    def _all(self) -> None:
        _read(self._fc_request, "query", ANY, dict.__len__(self) > 0)

    def __getitem__(self, key: str) -> Any:
        self._name(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self._name(key)
        return super().get(key, default)

    def getlist(self, key: str, default: Any = None) -> Any:
        self._name(key)
        return super().getlist(key, default)

    def __contains__(self, key: object) -> bool:
        self._name(key)
        return super().__contains__(key)

    def __iter__(self) -> Iterator[str]:
        self._all()
        return super().__iter__()

    def __len__(self) -> int:
        self._all()
        return super().__len__()

    def keys(self) -> Any:
        self._all()
        return super().keys()

    def items(self) -> Any:
        self._all()
        return super().items()

    def values(self) -> Any:
        self._all()
        return super().values()

    def lists(self) -> Any:
        self._all()
        return super().lists()

    def dict(self) -> Any:
        self._all()
        return super().dict()

    def urlencode(self, safe: str | None = None) -> str:
        self._all()
        return super().urlencode(safe)

    def copy(self) -> QueryDict:  # type: ignore[override]
        self._all()
        plain = QueryDict(mutable=True, encoding=self.encoding)
        for key, values in dict.items(self):
            plain.setlist(key, list(values))
        return plain

    def __copy__(self) -> QueryDict:  # type: ignore[override]
        return self.copy()

    def __deepcopy__(self, memo: Any) -> QueryDict:  # type: ignore[override]
        return self.copy()

    def __reduce_ex__(self, protocol: Any) -> Any:
        # Pickled as the plain QueryDict it stands for (its request is not picklable).
        self._all()
        lists = [(key, list(values)) for key, values in dict.items(self)]
        return (_query_dict, (self.encoding, lists))


def _query_dict(encoding: str, lists: list[tuple[str, list[str]]]) -> QueryDict:
    """A mutable ``QueryDict`` from ``lists``: how a pickled ``request.GET`` comes back."""
    plain = QueryDict(mutable=True, encoding=encoding)
    for key, values in lists:
        plain.setlist(key, values)
    return plain


# Session methods that only read; anything else (writes, flush, cycle_key…) refuses storing.
_SESSION_READS = frozenset(
    {"get", "keys", "values", "items", "is_empty", "session_key", "accessed", "modified",
     "get_expiry_age", "get_expiry_date", "get_expire_at_browser_close", "test_cookie_worked",
     "has_key", "_get_session", "_session", "exists", "load", "serializer", "_session_cache",
     "_session_key", "__class__"}
)


class _GuardedSession:
    """``request.session``: reads are free only when the request carries no session cookie
    (the session is then empty, the same for everyone); any write refuses storing."""

    def __init__(self, request: HttpRequest, real: Any) -> None:
        object.__setattr__(self, "_fc_request", request)
        object.__setattr__(self, "_fc_real", real)

    def _fc_read(self, key: str | None = None) -> None:
        request = self._fc_request
        if key == "_csrftoken":  # CSRF_USE_SESSIONS: handled by the CSRF placeholder
            return
        present = _session_cookie_present(request)
        _read(request, "cookie", settings.SESSION_COOKIE_NAME, present, what="the session")

    def _fc_write(self, what: str) -> None:
        _refuse(self._fc_request, f"wrote to the session ({what})")

    def __getattr__(self, name: str) -> Any:
        if name in _SESSION_READS:
            self._fc_read()
        else:
            self._fc_write(name)
        return getattr(self._fc_real, name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._fc_write(name)
        setattr(self._fc_real, name, value)

    def __getitem__(self, key: str) -> Any:
        self._fc_read(key)
        return self._fc_real[key]

    def __contains__(self, key: object) -> bool:
        self._fc_read(key if isinstance(key, str) else None)
        return key in self._fc_real

    def __setitem__(self, key: str, value: Any) -> None:
        self._fc_write(f"set {key!r}")
        self._fc_real[key] = value

    def __delitem__(self, key: str) -> None:
        self._fc_write(f"delete {key!r}")
        del self._fc_real[key]

    def __iter__(self) -> Iterator[str]:
        self._fc_read()
        return iter(self._fc_real)

    def __len__(self) -> int:
        self._fc_read()
        return len(self._fc_real)


def _check_user(request: HttpRequest, user: Any) -> None:
    """A user read is free for an anonymous visitor without a session cookie."""
    if getattr(user, "is_authenticated", False):
        _read(request, "user", "user", True, what="request.user (a logged-in user)")
    else:
        # Anonymous because there is no session: the page must not serve one who has one.
        present = _session_cookie_present(request)
        _read(request, "cookie", settings.SESSION_COOKIE_NAME, present, what="request.user")


class _GuardedUser(SimpleLazyObject):
    """``request.user``: evaluated (and checked) on first use, like Django's own lazy user."""

    def __init__(self, request: HttpRequest, real: Any) -> None:
        def resolve() -> Any:
            request.__dict__["_freshcache_suspended"] = True
            try:
                user = _evaluate(real)
            finally:
                request.__dict__.pop("_freshcache_suspended", None)
            _check_user(request, user)
            return user

        super().__init__(resolve)


def _evaluate(lazy: Any) -> Any:
    if isinstance(lazy, SimpleLazyObject):
        if lazy._wrapped is empty:
            lazy._setup()
        return lazy._wrapped
    return lazy


def _guard_auser(request: HttpRequest, real: Callable[[], Any]) -> Callable[[], Any]:
    async def auser() -> Any:
        request.__dict__["_freshcache_suspended"] = True
        try:
            user = await real()
        finally:
            request.__dict__.pop("_freshcache_suspended", None)
        _check_user(request, user)
        return user

    return auser


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
    user = saved["user"]
    if user is not _MISSING and not _stack_user_keyed(request):
        request.__dict__["user"] = _GuardedUser(request, user)
    if saved["auser"] is not _MISSING and not _stack_user_keyed(request):
        request.__dict__["auser"] = _guard_auser(request, saved["auser"])


def _stack_user_keyed(request: HttpRequest) -> bool:
    stack = _stack(request)
    return bool(stack) and all(g.user_keyed for g in stack)


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
    cookies = raw(request, "COOKIES")
    meta = raw(request, "META")
    get = raw(request, "GET")
    for source, name in absent:
        if source == "cookie":
            present = bool(cookies) if name == ANY else name in cookies
        elif source == "meta":
            present = True if name == ANY else name in meta
        elif source == "query":
            present = bool(get) if name == ANY else name in get
        elif source == "rawquery":
            present = meta.get("QUERY_STRING", "") != name
        else:
            present = True
        if present:
            if source == "rawquery":
                return "the raw query string differs from the stored render's"
            label = "a cookie" if name == ANY else repr(name)
            return reason_text(f"request has {source} {label}, absent when the entry was stored")
    return None
