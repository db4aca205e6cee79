"""The in-process store: the default for development and tests.

Entries and tag versions live in this process only, so a write made by another process (another
gunicorn worker, a ``manage.py shell``) is not seen here: use a shared store (``database://`` or
``redis://``) whenever more than one process serves or writes (check ``freshcache.W001``).
Both maps are bounded LRUs; evicting a tag version only causes misses (contract point 4).
Leases (single flight) live in this process too: they keep one computation per key *per
process*, which is all that sharing nothing allows.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Collection, Sequence
from urllib.parse import parse_qs, urlsplit

from .base import Hit, Snapshot, Store, Stored

__all__ = ["MAX_MARKS", "MemoryStore"]

#: How many applied invalidation-log ids are remembered.
MAX_MARKS = 100_000


class MemoryStore(Store):
    """``memory://?max_entries=10000&max_tags=200000``: thread-safe, bounded, in-process."""

    shared = False
    blocking = False

    def __init__(self, name: str, url: str) -> None:
        super().__init__(name, url)
        query = parse_qs(urlsplit(url).query)
        self.max_entries = int(query.get("max_entries", ["10000"])[0])
        self.max_tags = int(query.get("max_tags", ["200000"])[0])
        if self.max_entries < 1 or self.max_tags < 1:
            raise ValueError(f"memory store {url!r}: max_entries and max_tags must be positive")
        self._lock = threading.Lock()
        self._epoch = secrets.token_hex(8)
        self._seq = 0
        self._nonce = 0
        # A version is (sequence value, nonce): bumps use nonce 0, first sightings a fresh nonce.
        self._tags: OrderedDict[str, tuple[int, int]] = OrderedDict()
        # key -> (payload, {tag: version}, expiry as time.monotonic() or None)
        # Ids of invalidation-log rows already bumped (bounded: a forgotten mark costs one
        # extra bump when a relay applies that row, never a lost one).
        self._marks: OrderedDict[int, None] = OrderedDict()
        self._entries: OrderedDict[str, tuple[bytes, dict[str, tuple[int, int]], float | None]] = (
            OrderedDict()
        )
        # key -> (token, expiry as time.monotonic()); expired ones are dropped when met, and
        # the table is bounded like the entries (a lease forgotten costs one extra computation).
        self._leases: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def _snapshot(self) -> Snapshot:
        return Snapshot(self._epoch, self._seq)

    def begin(self) -> Snapshot:
        with self._lock:
            return self._snapshot()

    def lookup(self, key: str) -> Hit | Snapshot:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                payload, versions, expires = found
                if (expires is None or expires > time.monotonic()) and all(
                    self._tags.get(tag) == version for tag, version in versions.items()
                ):
                    self._entries.move_to_end(key)
                    for tag in versions:
                        self._tags.move_to_end(tag)
                    return Hit(payload, frozenset(versions))
                del self._entries[key]
            return self._snapshot()

    def set(
        self,
        key: str,
        payload: bytes,
        tags: Collection[str],
        snapshot: Snapshot,
        timeout: float | None = None,
    ) -> bool:
        with self._lock:
            if snapshot.epoch != self._epoch:
                return False
            versions: dict[str, tuple[int, int]] = {}
            missing = []
            for tag in tags:
                version = self._tags.get(tag)
                if version is None:
                    missing.append(tag)
                elif version[0] > snapshot.seq:
                    return False
                else:
                    versions[tag] = version
            if missing:
                # First sighting (or evicted): a version never handed out before, at the
                # current position, so other computations see no bump. Storing now is safe
                # only if nothing was bumped since the snapshot: the lost version may have been
                # such a bump.
                self._nonce += 1
                for tag in missing:
                    self._put_tag(tag, (self._seq, self._nonce))
                    versions[tag] = (self._seq, self._nonce)
                if self._seq != snapshot.seq:
                    return False
            expires = None if timeout is None else time.monotonic() + timeout
            self._entries[key] = (payload, versions, expires)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            return True

    def _put_tag(self, tag: str, version: tuple[int, int]) -> None:
        self._tags[tag] = version
        self._tags.move_to_end(tag)
        while len(self._tags) > self.max_tags:
            self._tags.popitem(last=False)

    def bump(self, tags: Collection[str], marks: Collection[int] = ()) -> None:
        with self._lock:
            if marks and all(m in self._marks for m in marks):
                return  # a relay applied these log rows after they committed
            self._bump_locked(tags, marks)

    def _bump_locked(self, tags: Collection[str], marks: Collection[int]) -> None:
        if tags:
            self._seq += 1
        for tag in tags:
            self._put_tag(tag, (self._seq, 0))
        for mark in marks:
            self._marks[mark] = None
        while len(self._marks) > MAX_MARKS:
            self._marks.popitem(last=False)

    def apply(
        self, batch: Sequence[tuple[int, Collection[str]]], bumped: list[int] | None = None
    ) -> int:
        applied = 0
        with self._lock:
            for mark, tags in batch:
                if mark not in self._marks:
                    self._bump_locked(tags, (mark,))
                    applied += 1
                    if bumped is not None:
                        bumped.append(mark)
        return applied

    def marked(self, marks: Collection[int]) -> frozenset[int]:
        with self._lock:
            return frozenset(m for m in marks if m in self._marks)

    def acquire(self, key: str, ttl: float) -> str | None:
        now = time.monotonic()
        with self._lock:
            held = self._leases.get(key)
            if held is not None and held[1] > now:
                return None
            token = secrets.token_hex(8)
            self._leases[key] = (token, now + ttl)
            self._leases.move_to_end(key)
            while len(self._leases) > self.max_entries:
                self._leases.popitem(last=False)
            return token

    def release(self, key: str, token: str) -> None:
        with self._lock:
            held = self._leases.get(key)
            if held is not None and held[0] == token:
                del self._leases[key]

    def forget(self, marks: Collection[int]) -> None:
        with self._lock:
            for mark in marks:
                self._marks.pop(mark, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._tags.clear()
            self._marks.clear()
            self._leases.clear()
            self._epoch = secrets.token_hex(8)

    def inspect(self, key: str) -> Stored | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            payload, versions, expires = found
            current = {tag: self._tags.get(tag) for tag in versions}
        return Stored(
            payload,
            {tag: _text(v) for tag, v in versions.items()},
            {tag: None if v is None else _text(v) for tag, v in current.items()},
            None if expires is None else expires - time.monotonic(),
        )

    def __len__(self) -> int:
        return len(self._entries)


def _text(version: tuple[int, int]) -> str:
    seq, nonce = version
    return str(seq) if not nonce else f"{seq}.{nonce}"
