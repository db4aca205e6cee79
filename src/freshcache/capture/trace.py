"""Which tags each database read added, and to which cached computation: for the debug-toolbar
panel (``freshcache.contrib.debug_toolbar``).

Off unless something traces: capture then pays one module attribute read per read it tags
(:data:`tracing`). :func:`tracing_reads` turns it on for as long as at least one block is open (a
count, so concurrent requests keep it on) and collects the reads of its own context only (a
``contextvars.ContextVar``: each thread and asyncio task sees its own list).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["Read", "record", "tracing", "tracing_reads"]

#: True while any :func:`tracing_reads` block is open. Read by capture as ``trace.tracing``.
tracing = False


@dataclass(frozen=True, slots=True)
class Read:
    """One read inside a cached computation: its SQL (without parameters), the tags it added,
    and the key of the computation (the innermost scope) it was read in."""

    sql: str
    tags: frozenset[str]
    key: str


_current: contextvars.ContextVar[list[Read] | None] = contextvars.ContextVar(
    "freshcache_traced_reads", default=None
)
_lock = threading.Lock()
_open = 0


def record(sqls: Iterable[str], tags: Iterable[str], key: str) -> None:
    """Note a read (capture calls it after ``Scope.add`` when :data:`tracing` is on)."""
    found = _current.get()
    if found is not None:
        found.append(Read("; ".join(sqls), frozenset(tags), key))


@contextmanager
def tracing_reads() -> Iterator[list[Read]]:
    """Collect the reads tagged while the block runs, in this context, into the yielded list."""
    global tracing, _open
    found: list[Read] = []
    with _lock:
        _open += 1
        tracing = True
    token = _current.set(found)
    try:
        yield found
    finally:
        _current.reset(token)
        with _lock:
            _open -= 1
            tracing = _open > 0
