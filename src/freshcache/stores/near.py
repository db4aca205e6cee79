"""The near cache (L1): recent entries in the process's memory, in front of a shared store.

A hit from the near cache makes no network call. It is kept coherent by the store's
invalidation channel (``redis_channel.py``): every bump publishes the tags it bumped, and the
near cache drops every entry that depends on one of them. Its rules (docs/internals.md, "The near
cache"):

1. **Used only while the channel is healthy**: subscribed, its own heartbeat echoed back
   recently, and everything already delivered to the process taken in (drained) just before
   the entry is served. Otherwise every lookup goes to the store, as without a near cache. It
   is emptied whenever messages may have been lost (a read error, a reconnection, a message
   that does not parse, another epoch); a heartbeat that is merely late keeps the entries
   (what arrives later arrives in order) but stops their use until it comes back.
2. **Filled only with what cannot be stale**: an entry the store validated (a hit) or accepted
   (a set) goes in only if no invalidation touching its tags was taken in since just before the
   store call, and the channel was healthy throughout. An invalidation arriving while the store
   call was in flight may be for a bump that came after it: the entry is simply not kept.
3. **This process's own bumps** drop its entries at once, before and after the bump: a request
   right after a write in the same process never waits for the message.

Bounded in bytes (payloads plus a per-entry and per-tag overhead), least recently used first;
the recent invalidations it remembers take at most a sixteenth of that bound more.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .base import Hit, Snapshot, Store, Stored
from .journal import Journal

__all__ = ["MIN_NEAR_CACHE", "Channel", "NearCache", "NearStore", "parse_size"]

#: Bytes counted for an entry besides its payload and tags: the entry's own objects and the
#: decoded page kept in its memo (a ``Page`` with its header list and dicts), measured with
#: ``bench/near_memory.py``: pages of a few hundred bytes took about 1.3x what a count with 200
#: here gave, and of about 100 bytes up to 3x.
ENTRY_OVERHEAD = 2048
#: Bytes counted per tag of an entry besides its name: the string object, its slot in the
#: entry's frozenset, and the tag index's set and dict slot (measured with tracemalloc: ~400
#: per distinct tag).
TAG_OVERHEAD = 400
#: Invalidations remembered to decide whether an entry fetched meanwhile may be kept, at most;
#: and at most this fraction of the bound in bytes (each tag counted as its name plus
#: ``EVENT_TAG_OVERHEAD``). Forgetting only costs an entry its place in the near cache.
EVENTS = 4096
EVENT_SHARE = 16
EVENT_TAG_OVERHEAD = 140


#: The smallest near cache accepted (bytes): anything smaller holds a handful of entries at most.
MIN_NEAR_CACHE = 64 * 1024
_SIZE_UNITS = {"": 1, "k": 1024, "kb": 1024, "m": 2**20, "mb": 2**20, "g": 2**30, "gb": 2**30}


def parse_size(text: str) -> int:
    """``"64mb"`` -> 67108864: bytes, with an optional k/kb/m/mb/g/gb suffix (powers of 1024).

    Raise ``ValueError`` for anything else, or a size over 64 GiB.
    """
    number = text.strip().lower().rstrip("bgkm")
    unit = text.strip().lower()[len(number) :]
    if unit not in _SIZE_UNITS or not (number.isascii() and number.isdigit()):
        raise ValueError(f"near_cache must be a size such as 67108864 or 64mb, not {text!r}")
    size = int(number) * _SIZE_UNITS[unit]
    if size > 64 * 2**30:
        raise ValueError("near_cache must be at most 64gb")
    return size


@dataclass(frozen=True, slots=True)
class _Entry:
    hit: Hit
    size: int


class NearCache:
    """The entries, their tag index and the recent invalidations. Thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._by_tag: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        #: Bumped by every invalidation taken in (and every flush).
        self.generation = 0
        #: ``(generation, tags or None for a flush, bytes counted)`` of the latest invalidations.
        self._events: deque[tuple[int, frozenset[str] | None, int]] = deque()
        self.event_bytes = 0
        self._event_budget = max(64 * 1024, max_bytes // EVENT_SHARE)
        #: Lookups answered from memory, and lookups that found nothing here (while usable).
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Hit | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self.hits += 1
            self._entries.move_to_end(key)
            return entry.hit

    def put(self, key: str, hit: Hit, since: int) -> Hit | None:
        """Keep ``hit`` unless an invalidation of one of its tags (or a flush) was taken in
        after generation ``since``; return the ``Hit`` kept (with its memo), or ``None``."""
        # The payload counts twice: once as stored, once for the value decoded from it, which
        # the core keeps in the entry's memo (``Hit.memo``).
        size = ENTRY_OVERHEAD + len(key) + 2 * len(hit.payload)
        size += sum(len(t) + TAG_OVERHEAD for t in hit.tags)
        if size > self.max_bytes or any("\n" in t for t in hit.tags):
            return None  # a tag with a newline could not be named in an invalidation
        with self._lock:
            if since < self.generation:
                oldest = self._events[0][0] if self._events else self.generation + 1
                if oldest > since + 1:
                    return None  # events were forgotten: cannot tell
                for generation, tags, _ in self._events:
                    if generation > since and (tags is None or not tags.isdisjoint(hit.tags)):
                        return None
            self._drop(key)
            kept = Hit(hit.payload, hit.tags, {})
            self._entries[key] = _Entry(kept, size)
            self.bytes += size
            for tag in hit.tags:
                self._by_tag.setdefault(tag, set()).add(key)
            while self.bytes > self.max_bytes and self._entries:
                self._drop(next(iter(self._entries)))
            return kept

    def invalidate(self, tags: Iterable[str]) -> None:
        """Drop every entry depending on one of ``tags``."""
        names = frozenset(tags)
        with self._lock:
            self._remember(names)
            for tag in names:
                for key in self._by_tag.pop(tag, ()):
                    self._drop(key)

    def flush(self) -> None:
        """Drop everything (the channel lost messages, a new epoch, a malformed message)."""
        with self._lock:
            self._remember(None)
            self._entries.clear()
            self._by_tag.clear()
            self.bytes = 0

    def _remember(self, names: frozenset[str] | None) -> None:
        self.generation += 1
        size = 64 + sum(len(t) + EVENT_TAG_OVERHEAD for t in names or ())
        self._events.append((self.generation, names, size))
        self.event_bytes += size
        while len(self._events) > 1 and (
            len(self._events) > EVENTS or self.event_bytes > self._event_budget
        ):
            self.event_bytes -= self._events.popleft()[2]

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self.bytes -= entry.size
        for tag in entry.hit.tags:
            keys = self._by_tag.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_tag[tag]


class Channel(Protocol):
    """An invalidation channel feeding a :class:`NearCache` (``redis_channel.RedisChannel``)."""

    def ready(self) -> bool:
        """Take in everything delivered so far; return whether the near cache may be used."""
        ...

    def close(self) -> None: ...


class NearStore(Store):
    """A store with a near cache in front: the contract of ``base.Store``, faster hits.

    Everything but ``lookup`` and ``set`` goes to the inner store; its own bumps also drop this
    process's entries at once. Attributes the inner store has beyond the contract (``ping``,
    ``memory_config``…) are reached through it.
    """

    def __init__(self, inner: Store, near: NearCache, channel: Channel) -> None:
        super().__init__(inner.name, inner.url)
        self.inner = inner
        self.near = near
        self.channel = channel
        self.shared = inner.shared
        self.thread_sensitive = inner.thread_sensitive
        self.blocking = inner.blocking
        # Its own entries are dropped before the inner store's ``apply`` is sent (``apply``).
        self.apply_grace = inner.apply_grace

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def peek(self, key: str) -> Hit | None:
        return self.near.get(key) if self.channel.ready() else None

    def lookup(self, key: str) -> Hit | Snapshot:
        since = None
        if self.channel.ready():
            hit = self.near.get(key)
            if hit is not None:
                return hit
            since = self.near.generation
        result = self.inner.lookup(key)
        if isinstance(result, Hit) and since is not None and self.channel.ready():
            # The kept Hit, so the value the core decodes now is remembered for later hits.
            return self.near.put(key, result, since) or result
        return result

    def begin(self) -> Snapshot:
        return self.inner.begin()

    def set(
        self,
        key: str,
        payload: bytes,
        tags: Collection[str],
        snapshot: Snapshot,
        timeout: float | None = None,
    ) -> bool:
        since = self.near.generation if self.channel.ready() else None
        stored = self.inner.set(key, payload, tags, snapshot, timeout)
        if stored and since is not None and self.channel.ready():
            self.near.put(key, Hit(payload, frozenset(tags)), since)
        return stored

    def bump(self, tags: Collection[str], marks: Collection[int] = ()) -> None:
        self.near.invalidate(tags)
        try:
            self.inner.bump(tags, marks)
        finally:
            self.near.invalidate(tags)

    def apply(
        self, batch: Sequence[tuple[int, Collection[str]]], bumped: list[int] | None = None
    ) -> int:
        tags = {tag for _, row in batch for tag in row}
        self.near.invalidate(tags)
        try:
            return self.inner.apply(batch, bumped)
        finally:
            self.near.invalidate(tags)

    def acquire(self, key: str, ttl: float) -> str | None:
        return self.inner.acquire(key, ttl)

    def release(self, key: str, token: str) -> None:
        self.inner.release(key, token)

    def forget(self, marks: Collection[int]) -> None:
        self.inner.forget(marks)

    def clear(self) -> None:
        self.near.flush()
        try:
            self.inner.clear()
        finally:
            self.near.flush()

    def journal(self) -> Journal:
        return self.inner.journal()

    def inspect(self, key: str) -> Stored | None:
        return self.inner.inspect(key)

    def bumps_in_transaction(self, using: str) -> bool:
        return self.inner.bumps_in_transaction(using)

    def close(self) -> None:
        self.channel.close()
        self.inner.close()

    def __repr__(self) -> str:
        return f"<near cache in front of {self.inner!r}>"
