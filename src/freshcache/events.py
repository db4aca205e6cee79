"""Outcome events: what each cached computation did, and each invalidation, for listeners.

Every cached computation reports one :class:`Event` with its ``kind`` (``"page"``,
``"fragment"``, ``"function"``, or ``"value"`` for a direct ``core.fetch``), its ``name`` (the
view, the fragment, the function: never the per-argument key, so the number of names stays
bounded) and its outcome: a **hit**, a **miss** (computed against a snapshot: stored, or not with
a reason) or a **bypass** (computed without looking at the store, or a hit its caller refused,
with a reason). Every bump made by this process reports one :class:`Invalidation`.

Listeners are :func:`subscribe`\\ d callables (``freshcache.signals`` and ``freshcache.metrics``
subscribe while they have something to do). While nobody listens, :data:`listening` is False
and the cost of all this is one module attribute read per computation: ``core.fetch`` then
neither times nor classifies anything.

Pages and fragments decide their outcome after the store answered (a page served from a hit
may still be refused by its recorded conditions; a page's first lookup may find only a marker
naming the headers it varies on). ``core.fetch`` therefore *holds* their event, and the caller
:func:`settle`\\ s it at its outcome point with what it finally served. Values and functions
are reported by ``core.fetch`` at once.
"""

from __future__ import annotations

import contextvars
import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from .scope import current_scope

__all__ = [
    "Event",
    "Invalidation",
    "aobserve",
    "invalidated",
    "listening",
    "observe",
    "settle",
    "subscribe",
    "unsubscribe",
]

logger = logging.getLogger("freshcache")

T = TypeVar("T")

#: The kinds whose caller decides the outcome after the store answered (see :func:`settle`).
SETTLED_BY_CALLER = frozenset({"page", "fragment"})

State = Literal["hit", "miss", "bypass"]


@dataclass(frozen=True, slots=True)
class Event:
    """One cached computation's outcome.

    ``outcome``: ``"hit"``, ``"miss"`` (computed against a snapshot) or ``"bypass"`` (computed
    without the store, or a hit refused by its caller). ``stored``: a miss's value was stored.
    ``reason``: why it was not stored (a miss) or why the store was not used (a bypass);
    ``None`` for a hit and a stored miss. ``seconds``: wall-clock seconds the computation took
    (misses and bypasses computed inside ``fetch``; ``None`` for a hit). ``tags``: the tags the
    value depends on (a hit's recorded tags, a miss's collected ones). ``key``: the store key.
    """

    kind: str
    name: str
    outcome: State
    stored: bool = False
    reason: str | None = None
    seconds: float | None = None
    tags: frozenset[str] = frozenset()
    #: The store key it was looked up under (``None`` when nothing was looked up: a request
    #: that could not use the cache). Not bounded: never a metric label.
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Invalidation:
    """One bump of ``tags`` made by this process, sent to every store.

    ``origin``: ``"host:pid"`` of the process. ``source``: what asked for it: ``"write"`` (a
    write that capture saw: ORM, SQL, a registered model), ``"invalidate"`` (a call of
    ``freshcache.invalidate``) or ``"cache"`` (a write through Django's cache framework).
    ``failed``: at least one store did not take the bump (a relay applies it later from the
    invalidation log).
    """

    tags: frozenset[str]
    origin: str
    source: str
    failed: bool = False


Listener = Callable[[Event | Invalidation], None]

#: True while anyone listens. Read by the hot path as ``events.listening`` (one attribute read).
listening = False

_lock = threading.Lock()
_listeners: tuple[Listener, ...] = ()
_held: contextvars.ContextVar[Event | None] = contextvars.ContextVar(
    "freshcache_held", default=None
)
_failed: set[str] = set()


def subscribe(listener: Listener) -> None:
    """Call ``listener(event)`` for every :class:`Event` and :class:`Invalidation` from now on.

    It runs inline, where the outcome happened (a request's thread or task): keep it short.
    An exception it raises is logged once per listener at WARNING and otherwise ignored.
    """
    global listening, _listeners
    with _lock:
        if listener not in _listeners:
            _listeners = (*_listeners, listener)
        listening = True


def unsubscribe(listener: Listener) -> None:
    """Stop calling ``listener``; a listener never subscribed is ignored."""
    global listening, _listeners
    with _lock:
        _listeners = tuple(x for x in _listeners if x != listener)
        listening = bool(_listeners)


def emit(event: Event | Invalidation) -> None:
    """Hand ``event`` to every listener. A listener that raises never breaks the caller."""
    for listener in _listeners:
        try:
            listener(event)
        except Exception as exc:
            name = getattr(listener, "__qualname__", repr(listener))
            if name not in _failed:
                _failed.add(name)
                logger.warning(
                    "freshcache: the event listener %s raised; ignored (logged once)",
                    name,
                    exc_info=exc,
                )


def default_name(key: str) -> str:
    """The name of a direct ``fetch(key, ...)``: ``key`` up to its first ``:`` (bounded)."""
    return key.partition(":")[0][:64]


class _Timed:
    """Wraps a computation: how long it ran, and whether against a snapshot (a miss)."""

    __slots__ = ("compute", "missed", "seconds")

    def __init__(self, compute: Callable[[], Any]) -> None:
        self.compute = compute
        self.seconds: float | None = None
        self.missed = False

    def start(self) -> float:
        # core.fetch sets the scope's snapshot before a miss's computation, never a bypass's.
        scope = current_scope()
        self.missed = scope is not None and scope.snapshot is not None
        return time.perf_counter()

    def __call__(self) -> Any:
        started = self.start()
        try:
            return self.compute()
        finally:
            self.seconds = time.perf_counter() - started

    async def acall(self) -> Any:
        started = self.start()
        try:
            return await self.compute()
        finally:
            self.seconds = time.perf_counter() - started


def _event(kind: str, name: str, out: Any, timed: _Timed, key: str | None) -> Event:
    if out.hit:
        return Event(kind, name, "hit", tags=out.tags, key=key)
    return Event(
        kind,
        name,
        "miss" if timed.missed else "bypass",
        stored=out.stored,
        reason=out.reason,
        seconds=timed.seconds,
        tags=out.tags,
        key=key,
    )


def _report(event: Event) -> None:
    if event.kind in SETTLED_BY_CALLER:
        _held.set(event)
    else:
        emit(event)


def observe(
    run: Callable[[Callable[[], T]], Any],
    compute: Callable[[], T],
    kind: str,
    name: str,
    key: str | None = None,
) -> Any:
    """``run(timed_compute)`` (a ``fetch`` of ``key``): report its outcome as ``kind``/``name``."""
    timed = _Timed(compute)
    out = run(timed)
    _report(_event(kind, name, out, timed, key))
    return out


async def aobserve(
    run: Callable[[Callable[[], Awaitable[T]]], Awaitable[Any]],
    compute: Callable[[], Awaitable[T]],
    kind: str,
    name: str,
    key: str | None = None,
) -> Any:
    """:func:`observe` for ``afetch``."""
    timed = _Timed(compute)
    out = await run(timed.acall)
    _report(_event(kind, name, out, timed, key))
    return out


def forget() -> None:
    """Drop a held event (a page begins: nothing held before it is its own)."""
    if _held.get() is not None:
        _held.set(None)


def settle(kind: str, name: str, state: str, reason: str | None = None) -> Event:
    """Report what a page or fragment finally served, merged with the event ``fetch`` held.

    ``state``: ``"hit"`` (the stored value was served), ``"miss"`` (the computed value was
    served; the held event says whether it was stored) or ``"bypass"`` with ``reason``: a hit
    refused by the caller becomes a bypass, a stored miss whose value is not what was served
    (a page's Vary marker) a miss not stored, and no fetch at all (the request was not
    cacheable) a bypass.
    """
    held = _held.get()
    if held is not None:
        _held.set(None)
        if held.kind != kind:
            held = None  # left by a computation that raised before it settled
    if held is None:
        outcome: State = "hit" if state == "hit" else "miss" if state == "miss" else "bypass"
        event = Event(kind, name, outcome, reason=reason)
    elif state == "bypass" and held.outcome == "hit":
        event = Event(kind, name, "bypass", reason=reason, tags=held.tags, key=held.key)
    elif state == "bypass" and held.stored:
        event = Event(kind, name, held.outcome, False, reason, held.seconds, held.tags, held.key)
    elif held.name == name:
        event = held
    else:  # positional: dataclasses.replace costs microseconds on every page hit
        event = Event(
            kind, name, held.outcome, held.stored, held.reason, held.seconds, held.tags, held.key
        )
    emit(event)
    return event


_origin: tuple[int, str] | None = None


def origin() -> str:
    """``"host:pid"`` of this process (recomputed after a fork)."""
    global _origin
    pid = os.getpid()
    if _origin is None or _origin[0] != pid:
        _origin = (pid, f"{socket.gethostname()}:{pid}")
    return _origin[1]


def invalidated(tags: frozenset[str], source: str, failed: bool) -> None:
    """Report a bump of ``tags`` by this process (``invalidation.py``)."""
    if tags:
        emit(Invalidation(tags, origin(), source, failed))
