"""The outcome of a request: what the page cache did with it, and every cached computation inside.

While a request runs inside :func:`collecting` (``freshcache.middleware.OutcomeMiddleware``
opens it around each request; the debug-toolbar panel does too), freshcache records:

* the **page outcome** (:func:`page_outcome`): the :class:`~freshcache.events.Event` of the page
  that served the response (hit, miss or bypass, stored, reason, tags, seconds, view name), set
  on the request object where the page cache settles its outcome;
* the **request's outcomes** (:func:`request_outcomes`): every event reported while the request
  ran, in order: fragments, ``@cached`` functions and values, then the page (inner ones first,
  since an inner computation finishes before the one that encloses it).

Why a scope and not always: recording rides on the outcome events (``events.py``), which cost
nothing while nobody listens. :func:`collecting` subscribes for as long as at least one request
is inside it (a count, so concurrent requests keep it on), so a site that does not use the
outcome pays one attribute read per cached computation, as before.

No leak between requests: the page outcome lives on the request object, and the list of a
request's outcomes in a ``contextvars.ContextVar`` set for the duration of the block: each thread
and each asyncio task sees its own (asgiref carries it into ``sync_to_async`` threads and back).
A page's template cannot show its own outcome (its body is what is cached); an outer middleware
can, after ``get_response`` (the demo's badge does: ``example/blog/middleware.py``).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import events
from .events import Event

__all__ = ["Event", "collecting", "page_outcome", "request_outcomes"]

#: Request attributes (private: read them through the functions below).
PAGE_ATTRIBUTE = "_freshcache_page_outcome"
_ALL_ATTRIBUTE = "_freshcache_outcomes"

Reported = Event | events.Invalidation
_current: contextvars.ContextVar[list[Reported] | None] = contextvars.ContextVar(
    "freshcache_outcomes", default=None
)
_lock = threading.Lock()
_open = 0


def _collect(event: Reported) -> None:
    found = _current.get()
    if found is not None:
        found.append(event)


def active() -> bool:
    """Whether this thread or task is inside :func:`collecting`."""
    return _current.get() is not None


@contextmanager
def collecting(request: Any) -> Iterator[list[Reported]]:
    """Record the outcomes of everything cached while the block runs, for ``request``.

    Yields the list the events are appended to, with the invalidations the request made
    (:func:`request_outcomes` gives the events). Nested blocks for the same request share it.
    """
    global _open
    found: list[Reported] | None = getattr(request, _ALL_ATTRIBUTE, None)
    if found is None:
        found = []
        setattr(request, _ALL_ATTRIBUTE, found)
    with _lock:
        _open += 1
        if _open == 1:
            events.subscribe(_collect)
    token = _current.set(found)
    try:
        yield found
    finally:
        _current.reset(token)
        with _lock:
            _open -= 1
            if _open == 0:
                events.unsubscribe(_collect)


def page_outcome(request: Any) -> Event | None:
    """The outcome of the page that served ``request``; ``None`` if no page cache handled it.

    ``state``-like fields: ``outcome`` (``"hit"``, ``"miss"``, ``"bypass"``), ``stored``,
    ``reason``, ``tags`` (frozenset), ``seconds`` (``None`` for a hit), ``name`` (the view),
    ``kind`` (``"page"``). Recorded only inside :func:`collecting` (``OutcomeMiddleware``), or
    while any other outcome listener is connected (signals, metrics).

    >>> freshcache.page_outcome(response.wsgi_request).outcome   # in a test
    'hit'
    """
    return getattr(request, PAGE_ATTRIBUTE, None)


def request_outcomes(request: Any) -> tuple[Event, ...]:
    """Every outcome reported while ``request`` ran inside :func:`collecting`, in order."""
    found = getattr(request, _ALL_ATTRIBUTE, ())
    return tuple(event for event in found if isinstance(event, Event))
