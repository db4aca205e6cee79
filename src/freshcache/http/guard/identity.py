"""The guarded identity: ``request.session``, ``request.user`` and ``request.auser()``.

Reading who the visitor is is free only while it is the same for everyone: no session cookie
(an empty session, an anonymous user), or a key that covers the user (``request.user`` is then
not wrapped at all). A read when the visitor has a session or is logged in refuses storing; a
read when the session cookie is absent makes its absence a condition of the stored value. Any
write to the session refuses storing.

The proxies keep ``freshcache.http.guard`` as their ``__module__`` (see ``mappings.py``).
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject, empty

from .reads import _read, _refuse, raw

__all__ = ["_GuardedMessages", "_GuardedSession", "_GuardedUser", "_guard_auser"]


def _session_cookie_present(request: HttpRequest) -> bool:
    return settings.SESSION_COOKIE_NAME in raw(request, "COOKIES")


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
    __module__ = "freshcache.http.guard"

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
    """A user read: free where the key covers the user (``vary_on_user``), else free only for an
    anonymous visitor without a session cookie (whose absence becomes a condition)."""
    if getattr(user, "is_authenticated", False):
        _read(request, "user", "user", True, what="request.user (a logged-in user)")
    else:
        # Anonymous because there is no session: the page must not serve one who has one.
        present = _session_cookie_present(request)
        _read(request, "anonuser", settings.SESSION_COOKIE_NAME, present, what="request.user")


def _user_proxy(func: Callable[..., Any]) -> Callable[..., Any]:
    def inner(self: _GuardedUser, *args: Any) -> Any:
        return func(self._fc_user(), *args)

    return inner


class _GuardedUser(SimpleLazyObject):
    """``request.user``: evaluated on first use like Django's own lazy user, and checked on
    *every* use, so a fragment that reads the user after the page around it did is seen too."""
    __module__ = "freshcache.http.guard"

    def __init__(self, request: HttpRequest, real: Any) -> None:
        def resolve() -> Any:
            request.__dict__["_freshcache_suspended"] = True
            try:
                return _evaluate(real)
            finally:
                request.__dict__.pop("_freshcache_suspended", None)

        super().__init__(resolve)
        self.__dict__["_fc_request"] = request

    def _fc_user(self) -> Any:
        if self.__dict__["_wrapped"] is empty:
            self._setup()  # type: ignore[attr-defined]
        user = self.__dict__["_wrapped"]
        request = self.__dict__["_fc_request"]
        _check_user(request, user)
        if "session" in vars(request):
            # Who the visitor is comes from the session (Django's get_user): a render that
            # reads the user accessed it, even if something before loaded the user already, so
            # SessionMiddleware adds Vary: Cookie on the hits of what this render stores too.
            raw(request, "session").accessed = True
        return user

    __getattr__ = _user_proxy(getattr)
    __bool__ = _user_proxy(bool)
    __str__ = _user_proxy(str)
    __eq__ = _user_proxy(operator.eq)
    __ne__ = _user_proxy(operator.ne)
    __lt__ = _user_proxy(operator.lt)
    __gt__ = _user_proxy(operator.gt)
    __hash__ = _user_proxy(hash)
    __getitem__ = _user_proxy(operator.getitem)
    __iter__ = _user_proxy(iter)
    __len__ = _user_proxy(len)
    __contains__ = _user_proxy(operator.contains)

    @property  # type: ignore[misc]
    def __class__(self) -> Any:  # isinstance(request.user, AnonymousUser) reads the user
        return self._fc_user().__class__

    def __copy__(self) -> Any:
        return copy.copy(self._fc_user())

    def __deepcopy__(self, memo: Any) -> Any:
        return copy.deepcopy(self._fc_user(), memo)


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


class _GuardedMessages:
    """The messages storage as a template sees it (the ``messages`` context variable), inside a
    fragment rendered where the storage was loaded before the fragment's guard existed: its
    cached messages would be read unseen. Any message present refuses storing; none present
    makes the absence of every cookie that could carry them a condition."""
    __module__ = "freshcache.http.guard"

    def __init__(self, request: HttpRequest, storage: Any) -> None:
        self._fc_request = request
        self._fc_storage = storage

    def _fc_read(self) -> None:
        request, storage = self._fc_request, self._fc_storage
        if getattr(storage, "_queued_messages", None) or getattr(storage, "_loaded_data", None):
            _refuse(request, "read the messages of this visitor")
            return
        cookies = raw(request, "COOKIES")
        names = {settings.SESSION_COOKIE_NAME}
        for part in (storage, *getattr(storage, "storages", ())):
            name = getattr(part, "cookie_name", None)
            if isinstance(name, str):
                names.add(name)
        for name in sorted(names):
            _read(request, "cookie", name, name in cookies, what="the messages")

    def __iter__(self) -> Iterator[Any]:
        self._fc_read()
        return iter(self._fc_storage)

    def __len__(self) -> int:
        self._fc_read()
        return len(self._fc_storage)

    def __contains__(self, item: object) -> bool:
        self._fc_read()
        return item in self._fc_storage

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fc_storage, name)
