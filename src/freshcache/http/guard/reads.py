"""What one render may read from the request, and how each read is judged.

A :class:`Guard` says what a render's key covers and records what the render read. The guards of
the renders in progress form a stack on the request (a fragment inside a cached page pushes its
own); :func:`_read` judges one read against the whole stack and :func:`_refuse` refuses storing
outright. The proxies in ``mappings.py`` and ``identity.py`` call them; ``__init__.py`` installs
the proxies and pushes the guards.
"""

from __future__ import annotations

import logging
import secrets
import warnings
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from ...scope import current_scope, mark_uncacheable

__all__ = ["ANY", "Guard", "UncacheableWarning", "raw", "reason_text"]

logger = logging.getLogger("freshcache.http")

_MISSING = object()
_STACK_ATTR = "_freshcache_guards"
_RAW_ATTR = "_freshcache_raw"
ANY = "*"  # the name recorded when a whole mapping is enumerated


class UncacheableWarning(UserWarning):
    """With ``DEBUG``, warns that a render read request input outside its key."""

    __module__ = "freshcache.http.guard"  # where it has always been (filters, reprs)


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
        #: What the render did to the request, replayed on hits (``http.carry``).
        self.effects: dict[str, Any] = {}
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
        if source in ("user", "anonuser"):  # the key says who, "anonymous" included
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
