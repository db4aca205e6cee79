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
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

__all__ = ["Scope", "add_tags", "current_scope", "mark_uncacheable", "open_scope"]


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
            if scope.uncacheable is not None:
                parent.refuse(scope.uncacheable)
