"""The stack of scopes that collects tags while something cached is computed.

A scope is opened around each computation whose result may be stored (a ``@cached`` call, a
cached page, a ``{% cachefresh %}`` fragment). Everything read while it is open adds tags to it:
ORM queries (``freshcache.capture``), ``depends_on()``, and the tags of inner cached values, hit
or miss. When a scope closes, its tags and its *uncacheable* verdict bubble up into the enclosing
scope, so an outer page depends on everything its fragments depend on (Russian-doll caching).

Scopes live in a ``contextvars.ContextVar``: each thread and each asyncio task sees its own stack,
so concurrent requests under ASGI never mix their tags.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Scope",
    "add_tags",
    "current_scope",
    "forced_bypass",
    "mark_uncacheable",
    "open_scope",
    "uncached",
]


@dataclass(eq=False)
class Scope:
    """Tags collected by one computation, and whether its result may be stored."""

    name: str = ""
    tags: set[str] = field(default_factory=set)
    #: Why the result must not be stored (first reason wins); ``None`` while it may be.
    uncacheable: str | None = None
    parent: Scope | None = None
    #: Database reads capture saw in this scope itself (inner scopes count their own). Reads
    #: that leave the scope with no tag at all are a bug signal: ``@cached`` refuses to store.
    reads: int = 0
    #: The result (or an enclosing scope's) is meant for a store shared between processes:
    #: then what was read from state local to this process must not be stored.
    shared: bool = False
    #: The snapshot this scope's computation will be stored against, and its store (set by
    #: ``core.fetch`` on a miss): a value computed inside it is stored against the oldest of its
    #: own snapshot and these, since it may use data its enclosing computation read before its
    #: own snapshot (an instance the view loaded, then handed to a fragment).
    snapshot: Any = None
    store: Any = None
    #: The read generation of the oldest data this computation was given, loaded before it
    #: began (``inputs.note_inputs``; ``watermark.py``): stored only if none of it changed
    #: since. Bubbles up: whatever encloses this computation uses that data too.
    read_at: int | None = None
    #: Read replicas this computation read, checked at its first read of each: ``None`` if
    #: the replica had replayed the primary's writes, else why not (``capture/replicas.py``).
    replicas: dict[str, str | None] | None = None

    def note_read(self, read_at: int | None) -> None:
        if read_at is not None and (self.read_at is None or read_at < self.read_at):
            self.read_at = read_at

    def add(self, tags: Iterable[str]) -> None:
        """Record one database read (called by capture) and the tags it depends on."""
        self.reads += 1
        self.tags.update(tags)

    def refuse(self, reason: str) -> None:
        if self.uncacheable is None:
            self.uncacheable = reason


_current: contextvars.ContextVar[Scope | None] = contextvars.ContextVar(
    "freshcache_scope", default=None
)


def current_scope() -> Scope | None:
    """Return the innermost open scope, or ``None`` outside any cached computation."""
    return _current.get()


def add_tags(tags: Iterable[str]) -> None:
    """Add already-normalised tags to the innermost open scope, if any."""
    scope = _current.get()
    if scope is not None:
        scope.tags.update(tags)


def mark_uncacheable(reason: str) -> None:
    """Make the innermost open scope (and so every enclosing one) unfit to store."""
    scope = _current.get()
    if scope is not None:
        scope.refuse(reason)


@contextmanager
def open_scope(name: str = "", *, shared: bool = False) -> Iterator[Scope]:
    """Open a scope for the duration of the block; on exit its tags bubble up to the parent.

    ``shared``: the result goes to a store other processes read (inherited by inner scopes).
    """
    parent = _current.get()
    scope = Scope(name=name, parent=parent, shared=shared or (parent is not None and parent.shared))
    token = _current.set(scope)
    try:
        yield scope
    finally:
        _current.reset(token)
        if parent is not None:
            parent.tags.update(scope.tags)
            parent.note_read(scope.read_at)
            if scope.uncacheable is not None:
                parent.refuse(scope.uncacheable)


_bypass: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "freshcache_bypass", default=None
)
#: How many :func:`uncached` blocks are open in this process. While 0 (always, unless shadow
#: mode is rendering), ``core.fetch`` reads only this, not the context variable.
forcing = 0
_forcing_lock = threading.Lock()


def forced_bypass() -> str | None:
    """The reason every cached computation in this context bypasses the store, if one does."""
    return _bypass.get()


@contextmanager
def uncached(reason: str) -> Iterator[None]:
    """Compute every cached value inside the block without the store: no lookup, nothing
    stored, reported as a bypass with ``reason`` (a shadow render must see fresh data only)."""
    global forcing
    with _forcing_lock:
        forcing += 1
    token = _bypass.set(reason)
    try:
        yield
    finally:
        _bypass.reset(token)
        with _forcing_lock:
            forcing -= 1
