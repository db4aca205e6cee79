"""The Redis store on Redis Cluster: entries and tag versions spread over :data:`SHARDS` shards.

A shard is a complete Redis store (``redis.py``, its scripts and fence unchanged) whose keys
share one hash tag, so each of its operations stays one atomic script on the master serving
that tag's slot. The shards' tags are chosen so their slots are evenly spaced over the 16,384
(``shard_tags``): a cluster whose masters serve equal slot ranges, as ``redis-cli --cluster
create`` makes them, gets the same number of shards on each master when their count divides
:data:`SHARDS` (1, 2, 3 or 6 masters).

* An entry lives on one shard, chosen by its key (``shard_of``): a lookup and a store are one
  script on one master, as on a single Redis.
* A tag has a version on every shard: a bump (and a relay's ``apply``) runs on each shard, so
  each shard validates its entries alone. A bump that fails on some shard raises
  :class:`StoreUnavailable` after trying every shard; each shard remembers and replays what it
  missed, as a single Redis does, and the invalidation log applies it again (marks make that
  idempotent per shard).
* Each shard has its own position (epoch and sequence), so a snapshot is a vector of positions
  (:class:`VectorSnapshot`). A lookup's miss reads the position of the key's shard; the others
  come from what this process read last on each shard, read again when older than
  :data:`REFRESH_SECONDS`. A position read earlier is an older snapshot, which is always safe
  (more values are refused, none is stored stale); one this process knows none of is ``None``,
  and a value stored on that shard against it is refused.

The shard count is fixed, not an option: every process sharing the store must agree on where
each entry lives and which shards a bump reaches, and a setting could differ between processes
during a deploy. docs/scaling.md, "Redis Cluster", has the costs: a write runs one script per
shard; a hit is one script on one master.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Collection, Sequence
from typing import Any
from urllib.parse import urlsplit

from .base import Hit, Snapshot, Store, Stored, StoreUnavailable, VectorSnapshot
from .journal import Journal
from .redis import RedisStore
from .redis_memory import MemoryConfig

__all__ = ["REFRESH_SECONDS", "SHARDS", "ShardedRedisStore", "shard_tags"]

#: How many shards a ``redis+cluster://`` store has (the same in every process: see above).
SHARDS = 6
#: Seconds a position of another shard than the key's is used for a miss's snapshot before it
#: is read again.
REFRESH_SECONDS = 0.5
SLOTS = 16384


def shard_tags(prefix: str, count: int = SHARDS) -> list[str]:
    """The hash tag of each shard: ``prefix:i:n``, the first (n = 0, 1, …) whose slot (CRC16,
    the Redis Cluster specification's key hash) falls in the i-th of ``count`` equal ranges.

    Always both numbers, so that a tag names one prefix: read from the right, its last two
    parts are i and n, and the rest is the prefix. (``prefix:i`` for n = 0 and ``prefix:i:n``
    after it let stores ``tenant`` and ``tenant:1`` both pick ``tenant:1:1``, and share it.)
    """
    from redis.crc import key_slot

    tags = []
    for i in range(count):
        low, high = i * SLOTS // count, (i + 1) * SLOTS // count
        n = 0
        while not low <= key_slot(f"{prefix}:{i}:{n}".encode()) < high:
            n += 1
        tags.append(f"{prefix}:{i}:{n}")
    return tags


class ShardedRedisStore(Store):
    """``redis+cluster://host:7000,host:7001?prefix=site``: a Redis store on Redis Cluster,
    spread over :data:`SHARDS` shards (see the module docstring)."""

    def __init__(self, name: str, url: str, *, prefix: str = "fc", **options: Any) -> None:
        """``options``: the Redis store's (timeouts, breaker, ``timeout``)."""
        super().__init__(name, url)
        query_prefix = [v for k, v in _query(url) if k == "prefix"]
        prefix = query_prefix[-1] if query_prefix else prefix
        if "{" in prefix or "}" in prefix:
            # A shard's keys are "{<prefix>:<i>}:…": a brace would end that hash tag early, so
            # every shard would hash to one slot, and ``shard_tags`` would look for ever for a
            # tag in another slot range.
            raise ValueError(
                f"prefix must not contain braces, not {prefix!r}: each shard's keys are "
                "wrapped in a Redis Cluster hash tag of their own (redis+cluster://…?prefix=site)"
            )
        self.shards: list[RedisStore] = []
        for tag in shard_tags(prefix):
            client = self.shards[0]._client if self.shards else None
            self.shards.append(RedisStore(name, url, shard=tag, client=client, **options))
        client = self.shards[0]._client
        self._client = client
        self.apply_grace = self.shards[0].apply_grace
        self.breaker_seconds = self.shards[0].breaker_seconds
        self._lock = threading.Lock()
        self._read_at = [0.0] * len(self.shards)  # monotonic time of each shard's ``last``

    # -- where things live -------------------------------------------------------------------

    def shard_of(self, key: str) -> int:
        """The index of the shard holding entry ``key`` (CRC32 of the key, same everywhere)."""
        return zlib.crc32(key.encode()) % len(self.shards)

    def _shard(self, key: str) -> RedisStore:
        return self.shards[self.shard_of(key)]

    # -- snapshots ---------------------------------------------------------------------------

    def _read(self, index: int) -> Snapshot:
        started = time.monotonic()
        position = self.shards[index].begin()
        with self._lock:
            self._read_at[index] = max(self._read_at[index], started)
        return position

    def _vector(self, own: int | None = None, position: Snapshot | None = None) -> VectorSnapshot:
        """Every shard's position: ``position`` for shard ``own``, the others as last read (read
        again when older than :data:`REFRESH_SECONDS`; ``None`` when they cannot be read)."""
        now = time.monotonic()
        positions: list[Snapshot | None] = []
        for index, shard in enumerate(self.shards):
            if index == own:
                positions.append(position)
                continue
            last = shard.last
            if last is None or now - self._read_at[index] > REFRESH_SECONDS:
                try:
                    last = self._read(index)
                except StoreUnavailable:
                    last = None  # a value stored on that shard is refused; the others are not
            positions.append(last)
        return VectorSnapshot("*", 0, tuple(positions))

    def lookup(self, key: str) -> Hit | Snapshot:
        index = self.shard_of(key)
        started = time.monotonic()
        found = self.shards[index].lookup(key)
        if isinstance(found, Hit):
            return found
        with self._lock:
            self._read_at[index] = max(self._read_at[index], started)
        return self._vector(index, found)

    def begin(self) -> Snapshot:
        own = self._read(0)  # raises StoreUnavailable as a single store's begin would
        return self._vector(0, own)

    def set(
        self,
        key: str,
        payload: bytes,
        tags: Collection[str],
        snapshot: Snapshot,
        timeout: float | None = None,
    ) -> bool:
        index = self.shard_of(key)
        if not isinstance(snapshot, VectorSnapshot) or len(snapshot.positions) != len(self.shards):
            return False
        position = snapshot.positions[index]
        if position is None:
            return False  # no position of that shard read before the computation: not stored
        return self.shards[index].set(key, payload, tags, position, timeout)

    # -- invalidation: every shard -----------------------------------------------------------

    def _each(self, call: Any) -> list[Any]:
        """``call(shard)`` on every shard; the first ``StoreUnavailable`` is raised after all
        were tried (each shard keeps what it missed for its replay)."""
        results, failed = [], None
        for shard in self.shards:
            try:
                results.append(call(shard))
            except StoreUnavailable as exc:
                failed = failed or exc
        if failed is not None:
            raise failed
        return results

    def bump(self, tags: Collection[str], marks: Collection[int] = ()) -> None:
        if not tags and not marks:
            return

        held: list[int] = []

        def one(shard: RedisStore) -> None:
            started = time.monotonic()
            shard.bump(tags, marks, held=held)  # its reply's version is its position (``last``)
            index = self.shards.index(shard)
            with self._lock:
                self._read_at[index] = max(self._read_at[index], started)

        try:
            self._each(one)
        finally:
            self._hold(held)

    def apply(
        self, batch: Sequence[tuple[int, Collection[str]]], bumped: list[int] | None = None
    ) -> int:
        if not batch:
            return 0
        marks: list[list[int]] = []

        held: list[int] = []

        def one(shard: RedisStore) -> int:
            done: list[int] = []
            count = shard.apply(batch, done, held=held)
            marks.append(done)
            return count

        try:
            counts = self._each(one)
        finally:
            self._hold(held)
        if bumped is not None:
            bumped.extend(dict.fromkeys(m for done in marks for m in done))
        return max(counts)

    def _hold(self, held: list[int]) -> None:
        """Wait once for the longest hold the shards' bumps returned (``lua/_cluster.lua``):
        each was measured before this wait starts, so it covers them all."""
        self.shards[0]._hold(max(held, default=0))

    @property
    def pending_repair(self) -> bool:
        """True while bumps that failed on some shard wait to be replayed."""
        return any(shard.pending_repair for shard in self.shards)

    # -- the rest: the key's shard, or every shard -------------------------------------------

    def acquire(self, key: str, ttl: float) -> str | None:
        return self._shard(key).acquire(key, ttl)

    def release(self, key: str, token: str) -> None:
        self._shard(key).release(key, token)

    def clear(self) -> None:
        self._each(lambda shard: shard.clear())

    def inspect(self, key: str) -> Stored | None:
        return self._shard(key).inspect(key)

    def ping(self) -> bool:
        """True if every shard's master answers now (used by the system check)."""
        return all(shard.ping() for shard in self.shards)

    def memory_config(self) -> MemoryConfig | None:
        return self.shards[0].memory_config()

    def near(self) -> Store:
        """This store with a near cache in front, if ``near_cache`` asks for one, else itself
        (one near cache, fed by every shard's channel: ``redis_channel.sharded_near_store``)."""
        if not self.shards[0].near_cache:
            return self
        from .redis_channel import sharded_near_store

        return sharded_near_store(self, self.shards)

    def journal(self) -> Journal:
        return self.shards[0].journal()

    def close(self) -> None:
        for shard in self.shards:
            shard._outage.close()
        self._client.close()


def _query(url: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(urlsplit(url).query, keep_blank_values=True)
