"""Read generations: a lower bound of a store's sequence at the moment some data was read.

A ``{% cachefresh "post" post %}`` fragment or an ``@cached`` call given a model instance reads
its fields without a query: they are as old as the moment the instance was loaded, which may be
before the computation's own snapshot. Stored against that snapshot, a value built from an
instance loaded before a write that returned meanwhile would pass the stale-set guard (no tag
version is newer than the snapshot) and be served as current.

So every ORM read is stamped with the process's **read generation** at the moment it began
(``capture/patch.py``: each model instance's ``_state``, and each evaluated queryset), and each
snapshot a store hands this process is remembered here with the generation it advances to. The
newest snapshot remembered at or before a read's generation was taken before that read began:
the store's sequence could only have been higher when the data was read, so a value stored
against it (``Scope.read_at``, ``core``) is refused if any of its tags was bumped by a write
committed after the read. When no such snapshot is remembered (the process has not talked to
the store since before the read, or the read is older than :data:`HISTORY` snapshots), the
value is not stored: one more miss, never a stale entry.

A stamp means something only in the process that made it: a pickled copy is unpickled as the
generation of the lookup whose hit is being decoded (``decoding``; a hit is current as of its
lookup), or as no stamp at all elsewhere (``cache.get()`` of a pickled instance).
"""

from __future__ import annotations

import bisect
import contextvars
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import counters
from .scope import Scope, current_scope
from .stores.base import Snapshot, Store

__all__ = [
    "HISTORY",
    "Read",
    "bound",
    "bumped",
    "decoding",
    "generation",
    "observe",
    "oldest_enclosing",
    "prime",
    "read_generation",
    "read_of",
    "stamp",
    "stored_against",
]

#: Snapshots remembered per store (each miss of this process with a newer sequence adds one).
HISTORY = 4096

_lock = threading.Lock()
_generation = 0
_histories: weakref.WeakKeyDictionary[Any, tuple[list[int], list[Snapshot]]] = (
    weakref.WeakKeyDictionary()
)
_decoding: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "freshcache_decoding", default=None
)

ATTRIBUTE = "freshcache_read"


class Read(int):
    """A read generation, as stamped on a model instance's ``_state`` or a queryset."""

    __slots__ = ()

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (_unpickled, ())

    def __copy__(self) -> Read:
        return self

    def __deepcopy__(self, memo: Any) -> Read:
        return self


def _unpickled() -> Read | None:
    found = _decoding.get()
    return None if found is None else Read(found)


def generation() -> int:
    """The current read generation of this process (an ``int`` that only grows)."""
    return _generation


def observe(store: Any, snapshot: Snapshot) -> None:
    """Remember ``snapshot``, just handed to this process by ``store``, if newer than the last."""
    global _generation
    with _lock:
        history = _histories.get(store)
        if history is None:
            history = _histories[store] = ([], [])
        gens, snapshots = history
        last = snapshots[-1] if snapshots else None
        if last is not None and last.covers(snapshot):
            return
        _generation += 1
        gens.append(_generation)
        snapshots.append(snapshot)
        if len(gens) > 2 * HISTORY:
            del gens[:HISTORY], snapshots[:HISTORY]


_stale = False


def bumped() -> None:
    """This process bumped tags: the snapshots it remembers are all older than its own write,
    so data it reads next would be bounded by one of them and refused for that write's own
    bump. The next :func:`read_generation` takes a snapshot first (one ``begin()`` per store,
    once per write)."""
    global _stale
    _stale = True


def read_generation() -> int:
    """The read generation to stamp a read that is about to run with (see :func:`bumped`)."""
    global _stale
    if _stale:
        _stale = False
        prime(every=True)
    return _generation


def prime(every: bool = False) -> None:
    """Take a snapshot of each store this process has none of yet (``every``: of each store):
    data read or written from now on can then be bounded (a row created by a process's first
    write, handed at once to an ``@cached`` call). Never raises."""
    from .stores import all_stores

    try:
        stores = all_stores()
    except Exception:
        return
    from .capture.patch import internal

    for store in stores:
        if store in _histories and not every:
            continue
        try:
            with internal():  # the database store's own query is not the computation's read
                observe(store, store.begin())
        except Exception:
            continue  # unreachable: what is bounded by it is simply not stored


def bound(store: Any, read_at: int) -> Snapshot | None:
    """The newest snapshot of ``store`` remembered at or before generation ``read_at``: data
    read at that generation is no older than it. ``None`` when none is remembered."""
    with _lock:
        history = _histories.get(store)
        if history is None:
            return None
        index = bisect.bisect_right(history[0], read_at)
        return history[1][index - 1] if index else None


def stamp(obj: Any, read: Read) -> None:
    """Stamp a model instance (on its ``_state``) or a queryset with ``read``."""
    state = getattr(obj, "_state", None)
    target = state if state is not None else obj
    target.__dict__[ATTRIBUTE] = read


def read_of(obj: Any) -> int | None:
    """The read generation stamped on a model instance or queryset, if any."""
    state = getattr(obj, "_state", None)
    target = state if state is not None else obj
    found = getattr(target, "__dict__", {}).get(ATTRIBUTE)
    return None if found is None else int(found)


@contextmanager
def decoding(read_at: int) -> Iterator[None]:
    """Unpickle stamps inside the block as ``read_at`` (the generation before the lookup)."""
    token = _decoding.set(read_at)
    try:
        yield
    finally:
        _decoding.reset(token)


def oldest_enclosing(snapshot: Snapshot, store: Store) -> Snapshot | None:
    """The snapshot a value is stored against: the oldest of its own and those of the cached
    computations enclosing it in the same store (``Scope.snapshot``); ``None`` when one of them
    is of another epoch (the store was cleared or failed over meanwhile): not stored.

    A fragment or ``@cached`` value may be computed from data its enclosing computation read
    before the fragment's own snapshot: the post the view loaded, handed to
    ``{% cachefresh "post" post %}``. A write between that read and the fragment's snapshot would
    otherwise pass the stale-set guard, and the old title be stored as current.
    """
    scope = current_scope()
    while scope is not None:
        outer = scope.snapshot
        if outer is not None and scope.store is store:
            older = outer.older(snapshot)
            if older is None:  # another epoch: the store was cleared or failed over between
                return None
            snapshot = older
        scope = scope.parent
    return snapshot


def stored_against(scope: Scope, claimed: Snapshot, store: Store) -> Snapshot | str:
    """The snapshot the value computed in ``scope`` is stored against, or why it is not stored.

    The oldest of its own snapshot, those of the computations around it
    (:func:`oldest_enclosing`), and the snapshot bounding the data it was given that was loaded
    before it began (``Scope.read_at``; ``watermark.py``): a fragment outside any cached page
    given the post its view loaded before a write returned.
    """
    snapshot = oldest_enclosing(claimed, store)
    if snapshot is None:
        counters.incr("stores_skipped_uncacheable")
        return "the store started a new epoch during the enclosing computation"
    if scope.read_at is None:
        return snapshot
    loaded = bound(store, scope.read_at)
    older = None if loaded is None else loaded.older(snapshot)
    if older is None:
        counters.incr("stores_skipped_uncacheable")
        return "given data loaded before this process last saw the store's sequence"
    return older
