"""Django signals for what the cache does, so other tools can listen (docs/observability.md).

Each is sent with ``sender`` = the kind of cached computation (``"page"``, ``"fragment"``,
``"function"``, ``"value"``; ``"invalidation"`` for :data:`invalidated`), so a receiver may
listen to one kind only: ``hit.connect(on_page_hit, sender="page")``.

* :data:`hit` — served from the store. ``kind``, ``name``, ``tags``.
* :data:`miss` — computed: a miss (against a snapshot) or a bypass (without the store).
  ``kind``, ``name``, ``stored`` (bool), ``reason`` (why not stored or why bypassed; ``None``
  when stored), ``bypass`` (bool), ``seconds`` (float, the computation's wall-clock time, or
  ``None`` when it ran outside freshcache's fetch, as for a refused page hit), ``tags``.
* :data:`stored` — a miss's value was stored (sent after :data:`miss`). ``kind``, ``name``,
  ``tags``, ``seconds``.
* :data:`invalidated` — this process bumped tags. ``tags`` (frozenset of str), ``origin``
  (``"host:pid"``), ``source`` (``"write"``, ``"invalidate"``, ``"cache"``), ``failed`` (bool:
  a store did not take it; a relay applies it from the invalidation log).
* :data:`shadow_mismatch` — shadow mode re-rendered a page hit and got another page
  (``FRESHCACHE["SHADOW"]``). ``kind`` (``"page"``), ``name``, ``url``, ``tags`` (the cached
  page's), ``unrecorded`` (tags the re-render read that the cached page does not record),
  ``diff`` (a bounded unified diff excerpt). Sent from shadow mode's background thread.

Receivers run inline, in the request's thread, and must be plain functions (an ``async``
receiver is skipped, with a warning): keep them short. A receiver that raises never breaks the
request: the error is logged once per receiver at WARNING. Nothing is sent, and nothing is
computed for it, while no receiver is connected.
"""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import Signal

from . import events

__all__ = ["hit", "invalidated", "miss", "shadow_mismatch", "stored"]

logger = logging.getLogger("freshcache")

_failed: set[str] = set()


class _Signal(Signal):
    """A ``Signal`` that keeps ``events`` subscribed exactly while any of ours has receivers."""

    def connect(self, *args: Any, **kwargs: Any) -> None:
        super().connect(*args, **kwargs)
        _sync()

    def disconnect(self, *args: Any, **kwargs: Any) -> bool:
        found = super().disconnect(*args, **kwargs)
        _sync()
        return found

    def emit(self, sender: str, **named: Any) -> None:
        """Call each live receiver; one that raises is logged once and skipped."""
        if not self.has_listeners(sender):
            return
        live: Any = self._live_receivers(sender)
        # Django 5.0+ returns (sync, async) receivers; 4.2 a list of (sync) receivers.
        sync, asynchronous = live if isinstance(live, tuple) else (live, [])
        for receiver in sync:
            try:
                receiver(signal=self, sender=sender, **named)
            except Exception as exc:
                _warn(receiver, "raised; ignored", exc)
        for receiver in asynchronous:
            _warn(receiver, "is async; freshcache signals call plain functions only", None)


def _warn(receiver: Any, what: str, exc: Exception | None) -> None:
    name = getattr(receiver, "__qualname__", repr(receiver))
    if name in _failed:
        return
    _failed.add(name)
    logger.warning("freshcache: signal receiver %s %s (logged once)", name, what, exc_info=exc)


hit = _Signal()
miss = _Signal()
stored = _Signal()
invalidated = _Signal()
#: Not an outcome event: sent by shadow mode itself (``http/shadow.py``), whoever listens.
shadow_mismatch = _Signal()

_ALL = (hit, miss, stored, invalidated)


def _dispatch(event: events.Event | events.Invalidation) -> None:
    if isinstance(event, events.Invalidation):
        invalidated.emit(
            "invalidation",
            tags=event.tags,
            origin=event.origin,
            source=event.source,
            failed=event.failed,
        )
    elif event.outcome == "hit":
        hit.emit(event.kind, kind=event.kind, name=event.name, tags=event.tags)
    else:
        miss.emit(
            event.kind,
            kind=event.kind,
            name=event.name,
            stored=event.stored,
            reason=event.reason,
            bypass=event.outcome == "bypass",
            seconds=event.seconds,
            tags=event.tags,
        )
        if event.stored:
            stored.emit(
                event.kind, kind=event.kind, name=event.name, tags=event.tags, seconds=event.seconds
            )


def _sync() -> None:
    if any(signal.receivers for signal in _ALL):
        events.subscribe(_dispatch)
    else:
        events.unsubscribe(_dispatch)
