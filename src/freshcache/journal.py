"""The journal: what the cache did, shared by every process that shares the default store.

``manage.py freshcache why|stats|doctor`` and the admin dashboard read it. While
``FRESHCACHE["JOURNAL"]`` is on (the default), this module listens to outcome events
(``events.py``) and keeps, per process, a small buffer that a background thread adds to the
default store's journal (``stores/journal.py``) every :data:`FLUSH_SECONDS`:

* per ``kind``/``name`` (a view, fragment, function or value name: bounded, never a key):
  hits, misses, misses stored, bypasses, seconds spent computing, and the reasons a result was
  not stored, counted;
* the recent **invalidations** (a bounded ring): when, which tags, from which process
  (``host:pid``) and what asked for it (``write``, ``invalidate``, ``cache``, or ``log`` for a
  write from outside Django that a relay applied);
* the **slowest misses** (a bounded ring): the slowest few of each flush interval.

Diagnostics only: nothing here decides what is served. A journal that cannot be written (the
store is down) loses that interval's numbers, logged once at WARNING; a process that dies
loses at most its last interval. On ``memory://`` the journal lives in each process, so a
command run elsewhere sees nothing of it (the dashboard, served by the process, does).

>>> from freshcache import journal
>>> journal.flush()
>>> [(s.name, s.hits, s.misses) for s in journal.stats()]
[('blog:post', 120, 3)]
>>> journal.invalidations(limit=1)[0].tags
('blog.comment', 'blog.comment:17', 'blog.post:3')
"""

from __future__ import annotations

import atexit
import hashlib
import heapq
import json
import logging
import os
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from . import diagnosis, events

__all__ = [
    "FLUSH_SECONDS",
    "Recorded",
    "SlowMiss",
    "Stat",
    "flush",
    "invalidations",
    "reset",
    "slowest",
    "stats",
    "sync",
]

logger = logging.getLogger("freshcache")

#: Seconds between two additions of a process's buffer to the store's journal.
FLUSH_SECONDS = 2.0
#: Tags kept per recorded invalidation (the count of all of them is kept too).
MAX_TAGS = 100
#: Distinct reasons counted per name (further ones count as ``"other reasons"``); a reason is
#: cut to :data:`REASON_LENGTH` characters.
MAX_REASONS = 16
REASON_LENGTH = 160
#: A name longer than this (a fragment named from data) is cut and given a digest, so that a
#: counter's name stays within the database journal's column and a name cannot be made huge.
NAME_LENGTH = 120
#: Characters of tags kept per recorded invalidation, at most (the rest are counted only).
TAG_CHARS = 2000
#: The slowest misses of each interval kept in the ``slow`` ring.
SLOW_PER_FLUSH = 5
_SEP = "\t"
_FIELDS = ("hit", "miss", "stored", "bypass", "seconds")


@dataclass(frozen=True)
class Stat:
    """What one cached thing did, summed over every process and flush (``kind``, ``name``
    as in outcome events). ``seconds``: total wall-clock seconds of its misses and bypasses.
    ``reasons``: how many times each reason kept a result out of the store (or the store
    out of the way)."""

    kind: str
    name: str
    hits: int = 0
    misses: int = 0
    stored: int = 0
    bypasses: int = 0
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return self.hits + self.misses + self.bypasses

    @property
    def hit_ratio(self) -> float | None:
        """Hits over all computations (``None`` before the first)."""
        return self.hits / self.requests if self.requests else None


@dataclass(frozen=True)
class Recorded:
    """One invalidation: ``at`` (seconds since the epoch), the ``tags`` bumped (at most
    :data:`MAX_TAGS`, sorted; ``tag_count`` says how many there were), ``origin``
    (``"host:pid"``), ``source`` (``write``, ``invalidate``, ``cache``, ``log``) and ``failed``
    (a store did not take it at once; the relay applied it later)."""

    at: float
    tags: tuple[str, ...]
    tag_count: int
    origin: str
    source: str
    failed: bool = False

    def touches(self, tags: Collection[str]) -> bool:
        return not set(self.tags).isdisjoint(tags)


@dataclass(frozen=True)
class SlowMiss:
    """One slow computation: ``at`` (seconds since the epoch), ``seconds`` it took, whether it
    was ``stored``, and else why not (``reason``)."""

    at: float
    kind: str
    name: str
    seconds: float
    stored: bool
    reason: str | None


class _Buffer:
    """This process's numbers since the last flush."""

    def __init__(self) -> None:
        self.counts: dict[str, float] = {}
        self.hits: dict[tuple[str, str], int] = {}
        self.invalidations: list[str] = []
        self.slow: list[tuple[float, int, str]] = []  # a min-heap of the slowest


_lock = threading.Lock()
#: Held while a buffer taken is written (a reset waits for a flush in flight).
_flushing = threading.Lock()
_buffer = _Buffer()
_reasons_seen: dict[tuple[str, str], set[str]] = {}
_wake = threading.Event()
_thread: threading.Thread | None = None
_pid = 0
_on = False
_failed_logged = False
_tick = 0


def _bounded(name: str) -> str:
    if len(name) <= NAME_LENGTH and _SEP not in name:
        return name
    digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()
    return name.replace(_SEP, " ")[: NAME_LENGTH - 10] + "…#" + digest


def _add(name: str, value: float = 1.0) -> None:
    _buffer.counts[name] = _buffer.counts.get(name, 0.0) + value


def _reason(kind: str, name: str, reason: str) -> str:
    reason = reason[:REASON_LENGTH].replace(_SEP, " ")
    seen = _reasons_seen.setdefault((kind, name), set())
    if reason not in seen:
        if len(seen) >= MAX_REASONS:
            return "other reasons"
        seen.add(reason)
    return reason


def _listen(event: events.Event | events.Invalidation) -> None:
    global _tick
    if isinstance(event, events.Invalidation):
        record = _invalidation(event.tags, event.origin, event.source, event.failed)
        with _lock:
            _buffer.invalidations.append(record)
            _add(f"invalidation{_SEP}{event.source}{_SEP}count")
        _started()
        return
    name = event.name if len(event.name) <= NAME_LENGTH else _bounded(event.name)
    if event.outcome == "hit":  # the hot path: one dict update
        key = (event.kind, name)
        with _lock:
            hits = _buffer.hits
            hits[key] = hits.get(key, 0) + 1
        if _thread is None:
            _started()
        return
    name = _bounded(name)
    prefix = f"{event.kind}{_SEP}{name}{_SEP}"
    diagnose = False
    with _lock:
        _add(prefix + event.outcome)
        if event.stored:
            _add(prefix + "stored")
        elif event.reason:
            _add(prefix + "reason:" + _reason(event.kind, name, event.reason))
            if event.reason.startswith("wrote "):
                diagnose = True
        if event.seconds is not None:
            _add(prefix + "seconds", event.seconds)
            slow = _buffer.slow
            if len(slow) < SLOW_PER_FLUSH or event.seconds > slow[0][0]:
                _tick += 1
                record = json.dumps({"at": time.time(), "kind": event.kind, "name": name,
                                     "seconds": event.seconds, "stored": event.stored,
                                     "reason": event.reason})  # fmt: skip
                if len(slow) < SLOW_PER_FLUSH:
                    heapq.heappush(slow, (event.seconds, _tick, record))
                else:
                    heapq.heapreplace(slow, (event.seconds, _tick, record))
    if diagnose and event.reason:  # outside the lock: it may log
        diagnosis.note(event.kind, event.name, event.reason)
    _started()


def _invalidation(tags: Collection[str], origin: str, source: str, failed: bool) -> str:
    ordered = sorted(tags)
    kept: list[str] = []
    chars = 0
    for tag in ordered[:MAX_TAGS]:
        chars += len(tag)
        if chars > TAG_CHARS:
            break
        kept.append(tag)
    return json.dumps({"at": time.time(), "tags": kept, "count": len(ordered),
                       "origin": origin, "source": source, "failed": failed})  # fmt: skip


def note_applied(tags: Collection[str], source: str = "log") -> None:
    """Record an invalidation a relay applied for a write no process reported (a write from
    outside Django, through the log's triggers)."""
    if _on and tags:
        _listen(events.Invalidation(frozenset(tags), "database", source))


def _started() -> None:
    global _thread, _pid
    if _thread is not None:
        return
    with _lock:
        if _thread is None:
            _pid = os.getpid()
            _thread = threading.Thread(target=_run, name="freshcache-journal", daemon=True)
            _thread.start()


def _forked() -> None:
    """In a forked child: the parent flushes its own buffer; the child starts afresh."""
    global _thread, _buffer, _lock, _flushing, _wake
    _thread = None
    _wake = threading.Event()
    _buffer = _Buffer()
    _lock = threading.Lock()
    _flushing = threading.Lock()


os.register_at_fork(after_in_child=_forked)


def _run() -> None:
    while True:
        _wake.wait(FLUSH_SECONDS)
        _wake.clear()
        if _pid != os.getpid():
            return
        _flush_quietly()


def _take() -> _Buffer:
    global _buffer
    with _lock:
        taken, _buffer = _buffer, _Buffer()
    return taken


def _write(taken: _Buffer) -> None:
    from .stores import get_store
    from .stores.journal import RINGS

    for (kind, name), hits in taken.hits.items():
        key = f"{kind}{_SEP}{_bounded(name)}{_SEP}hit"
        taken.counts[key] = taken.counts.get(key, 0.0) + hits
    if not (taken.counts or taken.invalidations or taken.slow):
        return
    journal = get_store().journal()
    journal.add(taken.counts)
    journal.push("invalidations", taken.invalidations, RINGS["invalidations"])
    journal.push("slow", [slow for *_, slow in sorted(taken.slow)], RINGS["slow"])


def _flush_quietly() -> None:
    global _failed_logged
    try:
        with _flushing:
            _write(_take())
    except Exception as exc:
        with _lock:  # the flusher thread and an explicit flush may fail at once: log once
            first, _failed_logged = not _failed_logged, True
        if first:
            logger.warning("freshcache: the journal could not be written (numbers of this "
                           "interval lost; logged once): %s", exc)  # fmt: skip
    finally:
        _close_connections()


def _close_connections() -> None:
    """The flusher thread's own database connections, closed after each flush (an idle one
    would be held for ever by a daemon thread)."""
    if threading.current_thread() is _thread:
        from django.db import connections

        for conn in connections.all(initialized_only=True):
            conn.close()


def flush() -> None:
    """Add this process's buffered numbers to the store's journal now (else it happens every
    :data:`FLUSH_SECONDS`). Raises ``StoreUnavailable`` when the store cannot take them."""
    with _flushing:
        _write(_take())


def reset() -> None:
    """Empty the default store's journal and this process's buffer."""
    from .stores import get_store

    with _flushing:
        _take()
        get_store().journal().reset()


def stats(store: str | None = None) -> list[Stat]:
    """Every name's :class:`Stat`, busiest first (flushed numbers only: call :func:`flush`
    first to include this process's last seconds). Raises ``StoreUnavailable``."""
    from .stores import get_store

    found: dict[tuple[str, str], dict[str, Any]] = {}
    for key, value in get_store(store).journal().counts().items():
        kind, sep, rest = key.partition(_SEP)
        name, sep2, what = rest.rpartition(_SEP)
        if not (sep and sep2) or kind == "invalidation":
            continue
        row = found.setdefault((kind, name), {"reasons": {}})
        if what.startswith("reason:"):
            row["reasons"][what.removeprefix("reason:")] = int(value)
        elif what in _FIELDS:
            row[what] = value
    out = [
        Stat(
            kind,
            name,
            hits=int(row.get("hit", 0)),
            misses=int(row.get("miss", 0)),
            stored=int(row.get("stored", 0)),
            bypasses=int(row.get("bypass", 0)),
            seconds=float(row.get("seconds", 0.0)),
            reasons=row["reasons"],
        )
        for (kind, name), row in found.items()
    ]
    return sorted(out, key=lambda s: (-s.requests, s.kind, s.name))


def invalidations(
    limit: int = 100, store: str | None = None, touching: Collection[str] | None = None
) -> list[Recorded]:
    """The most recent invalidations, newest first, at most ``limit``; with ``touching``, only
    those that bumped one of those tags (read from the newest :data:`RINGS` records kept).
    Raises ``StoreUnavailable``."""
    from .stores import get_store
    from .stores.journal import RINGS

    wanted = None if touching is None else set(touching)
    read = RINGS["invalidations"] if wanted is not None else limit
    out: list[Recorded] = []
    for text in get_store(store).journal().read("invalidations", read):
        try:
            raw = json.loads(text)
            record = Recorded(
                float(raw["at"]),
                tuple(raw["tags"]),
                int(raw["count"]),
                str(raw["origin"]),
                str(raw["source"]),
                bool(raw["failed"]),
            )
        except (ValueError, KeyError, TypeError):
            continue  # not a record this version wrote
        if wanted is None or record.touches(wanted):
            out.append(record)
            if len(out) >= limit:
                break
    return out


def slowest(limit: int = 20, store: str | None = None) -> list[SlowMiss]:
    """The slowest recent misses and bypasses, slowest first. Raises ``StoreUnavailable``."""
    from .stores import get_store
    from .stores.journal import RINGS

    out: list[SlowMiss] = []
    for text in get_store(store).journal().read("slow", RINGS["slow"]):
        try:
            raw = json.loads(text)
            reason = raw["reason"]
            out.append(
                SlowMiss(
                    float(raw["at"]),
                    str(raw["kind"]),
                    str(raw["name"]),
                    float(raw["seconds"]),
                    bool(raw["stored"]),
                    None if reason is None else str(reason),
                )
            )
        except (ValueError, KeyError, TypeError):
            continue
    return sorted(out, key=lambda s: -s.seconds)[:limit]


def sync() -> None:
    """Listen to outcome events exactly while ``JOURNAL`` is on (settings changes too)."""
    global _on
    from .conf import get_settings

    on = get_settings().journal
    if on and not _on:
        events.subscribe(_listen)
    elif not on and _on:
        events.unsubscribe(_listen)
    _on = on


@atexit.register
def _at_exit() -> None:
    if _on and _pid == os.getpid():
        _flush_quietly()
