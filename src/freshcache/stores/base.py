"""The store contract: where entries and tag versions live.

Every store keeps two things:

* **tag versions**: for each tag, the value of a global, monotonic sequence at its last bump;
* **entries**: a payload (opaque bytes) plus, for each tag it depends on, the version that tag
  had when the entry was stored.

and promises the following, which the shared contract suite (``freshcache.testing.contract``)
checks for every implementation:

1. ``lookup`` returns a :class:`Hit` only if every tag of the entry still has the recorded
   version. A tag whose version is missing (never bumped, evicted, flushed) matches nothing.
2. ``bump`` gives every tag a version never handed out before, greater than every snapshot
   taken before it began. A sequence that was lost starts a new *epoch*: versions of different
   epochs never compare equal.
3. ``set`` stores only if no tag of the entry was bumped after ``snapshot`` was taken (the
   stale-set race guard) and the epoch has not moved. A tag with no version gets a fresh one;
   the entry is then stored only if nothing at all was bumped since the snapshot, because a
   missing version might be a bump that was lost.
4. Losing metadata only ever causes misses, never a stale hit.
5. ``bump(tags, marks)`` records the *marks* (ids of invalidation-log rows the bump stands for)
   atomically with the bump; ``apply`` bumps a log row's tags only if its mark is not recorded
   yet. So the relay never bumps again what the writer's own bump already did (that would cost
   every dependent entry a second miss), and a write whose bump failed is bumped exactly once,
   by whichever relay gets there first. Losing a mark costs one extra bump, never a lost one.
6. ``acquire(key, ttl)`` gives at most one caller at a time the *lease* on ``key`` (single-flight
   rendering, ``flight.py``): a token until ``release(key, token)`` or until ``ttl`` seconds
   have passed, whichever comes first; ``None`` to everyone else meanwhile. A lease only decides
   who computes: it never makes anything fresh or stale, so a lease lost (evicted, a store
   restarted) costs one extra computation, and a value under the lease's name that the store did
   not write never raises and never blocks longer than a lease would.

Methods raise :class:`StoreUnavailable` when the backing service cannot be reached; the core
turns that into an uncached computation. Implementations add only their reasons to these
docstrings.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from .journal import Journal, LocalJournal

__all__ = [
    "NO_LEASE",
    "Hit",
    "Snapshot",
    "Store",
    "StoreFull",
    "StoreUnavailable",
    "Stored",
]

#: The token :meth:`Store.acquire` returns from a store that keeps no leases: go ahead, alone
#: or not (every caller computes, as without single flight).
NO_LEASE = ""


class StoreUnavailable(Exception):
    """The store cannot be reached right now; compute uncached and store nothing."""


class StoreFull(StoreUnavailable):
    """The store answers but refuses to grow (Redis at ``maxmemory`` with ``noeviction``).

    Raised by the call that would have written; the store stays usable for lookups, so no
    circuit breaker opens. A bump that raises it failed like any other (the invalidation log
    keeps it).
    """


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The sequence position read before a computation starts reading data.

    Of two snapshots of one store, the older one is the safer to store a value against: a
    value computed from data read after either is no older than the older snapshot. Two
    snapshots of different epochs cannot be compared (:meth:`older` returns ``None``).
    """

    epoch: str
    seq: int

    def older(self, other: Snapshot) -> Snapshot | None:
        """The older of ``self`` and ``other`` (positions of one store), or ``None`` when they
        cannot be compared (another epoch: a value bounded by both is not stored)."""
        if type(other) is not Snapshot or other.epoch != self.epoch:
            return None
        return self if self.seq <= other.seq else other

    def covers(self, other: Snapshot) -> bool:
        """True if ``self`` is as new as ``other`` or newer (so ``other`` adds nothing)."""
        return type(other) is Snapshot and other.epoch == self.epoch and self.seq >= other.seq


@dataclass(frozen=True, slots=True)
class VectorSnapshot(Snapshot):
    """A snapshot of a store made of shards (``redis_shards.py``): one position per shard,
    ``None`` where this process knows none it can use. Each position was read before the
    computation started reading data. ``epoch`` and ``seq`` are not positions here (``"*"``, 0).
    """

    positions: tuple[Snapshot | None, ...] = ()

    def older(self, other: Snapshot) -> Snapshot | None:
        """Shard by shard, the older position; ``None`` for a shard where either has none or
        the two cannot be compared (a value stored on that shard is then not stored)."""
        if not isinstance(other, VectorSnapshot) or len(other.positions) != len(self.positions):
            return None
        return VectorSnapshot(
            "*",
            0,
            tuple(
                None if a is None or b is None else a.older(b)
                for a, b in zip(self.positions, other.positions, strict=True)
            ),
        )

    def covers(self, other: Snapshot) -> bool:
        return (
            isinstance(other, VectorSnapshot)
            and len(other.positions) == len(self.positions)
            and all(
                b is None or (a is not None and a.covers(b))
                for a, b in zip(self.positions, other.positions, strict=True)
            )
        )


@dataclass(frozen=True, slots=True)
class Hit:
    """A validated entry: its payload and the tags it depends on.

    ``memo`` is set by a near cache (``near.py``), which hands out the same ``Hit`` on every hit
    from memory: the core keeps the value it decoded (and verified) from ``payload`` there, so a
    later hit skips the MAC and the decoding. Only codecs whose values are never mutated use it
    (``shareable``).
    """

    payload: bytes
    tags: frozenset[str]
    memo: dict[str, Any] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Stored:
    """An entry as a store holds it, not validated (:meth:`Store.inspect`; diagnostics only).

    ``versions``: each tag's version recorded with the entry; ``current``: each tag's version
    now (``None``: the store has none, so the entry can never validate again). Versions are
    text for people (``"12"`` after a bump, ``"12.3"`` when first seen at 12), comparable only
    for equality. ``expires_in``: seconds left (``None``: no expiry; 0 or less: expired).
    ``same_epoch``: False for an entry of an earlier epoch (a cleared or restarted store).
    """

    payload: bytes
    versions: dict[str, str]
    current: dict[str, str | None]
    expires_in: float | None = None
    same_epoch: bool = True

    @property
    def moved(self) -> list[str]:
        """The tags whose version changed since the entry was stored, sorted."""
        return sorted(t for t, v in self.versions.items() if self.current.get(t) != v)

    @property
    def expired(self) -> bool:
        return self.expires_in is not None and self.expires_in <= 0

    @property
    def valid(self) -> bool:
        """True if a lookup now would validate it (``lookup``'s rules)."""
        return self.same_epoch and not self.expired and not self.moved


class Store(abc.ABC):
    """Where entries and tag versions live. Subclasses implement the five operations below."""

    #: True when other processes read this store: payloads are then signed by the core.
    shared: bool = True
    #: True when calls must run in Django's sync thread (they use a database connection).
    thread_sensitive: bool = False
    #: False when calls never wait on I/O: async callers then call them on the event loop.
    blocking: bool = True
    #: Seconds a relay's ``apply`` may be in flight while a hit from this store is still served
    #: (``Relay.hit_refused``). Nonzero only for a store that runs commands in the order they
    #: reach it (a lookup sent after the ``apply`` is run after it) and drops an ``apply`` only
    #: by a timeout of at least that many seconds. 0: no hit is served while one is in flight.
    apply_grace: float = 0.0

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url

    @abc.abstractmethod
    def lookup(self, key: str) -> Hit | Snapshot:
        """Return the valid entry under ``key``, or, on a miss, a snapshot taken now.

        Combining the two saves a round trip on every miss. The snapshot must be taken before
        the caller reads any data, which it is: the caller computes only after this returns.
        """

    def peek(self, key: str) -> Hit | None:
        """Return the valid entry under ``key`` if it is at hand without any I/O (a near
        cache's), else ``None``; never blocks, so ``afetch`` calls it on the event loop."""
        return None

    @abc.abstractmethod
    def begin(self) -> Snapshot:
        """Return the current sequence position."""

    @abc.abstractmethod
    def set(
        self,
        key: str,
        payload: bytes,
        tags: Collection[str],
        snapshot: Snapshot,
        timeout: float | None = None,
    ) -> bool:
        """Store ``payload`` under ``key`` unless a tag moved since ``snapshot``; say if stored.

        ``timeout`` (seconds) bounds the entry's lifetime for memory's sake; freshness never
        depends on it. ``None``: kept until evicted or invalidated. A store that expires tag
        versions keeps each tag of a stored entry at least as long as the entry.
        """

    @abc.abstractmethod
    def bump(self, tags: Collection[str], marks: Collection[int] = ()) -> None:
        """Give every tag in ``tags`` a new version, so every entry that depends on it misses.

        ``marks``: ids of invalidation-log rows this bump applies, recorded with it (see
        :meth:`apply`). A bump is attempted even while a circuit breaker is open: the breaker
        protects hits from a slow store, never at the cost of an invalidation.
        """

    @abc.abstractmethod
    def apply(
        self, batch: Sequence[tuple[int, Collection[str]]], bumped: list[int] | None = None
    ) -> int:
        """Apply invalidation-log rows: bump each ``(mark, tags)`` whose mark is not recorded.

        Each row is checked and bumped atomically, and its mark recorded with the bump. Return
        how many rows were bumped (the others had been applied already); when ``bumped`` is
        given, the marks of those rows are appended to it (``manage.py freshcache why`` names
        the writes the relay applied, from outside Django).
        """

    def acquire(self, key: str, ttl: float) -> str | None:
        """Take the lease on ``key`` for ``ttl`` seconds (> 0); return its token, or ``None``
        while another caller holds it.

        The default keeps no leases and returns :data:`NO_LEASE` to everyone. Raise
        :class:`StoreUnavailable` when the store cannot answer (the caller then computes).
        """
        return NO_LEASE

    def release(self, key: str, token: str) -> None:
        """Give the lease on ``key`` back if ``token`` still holds it (else do nothing: it
        expired and may be someone else's now). :data:`NO_LEASE` is never held."""

    def marked(self, marks: Collection[int]) -> frozenset[int]:
        """The marks among ``marks`` (log row ids) this store has recorded: those rows' bumps
        are done here. Changes nothing.

        A relay asks every store before it applies a batch: a batch that every store has
        applied already (the writers bumped it, as after any write through Django) bumps
        nothing, so hits are not held while it is deleted (``Relay.hit_refused``). The default,
        for a store that cannot tell, is an empty set: every row counts as not applied.
        Raises :class:`StoreUnavailable` when the store cannot be reached.

        Example: ``store.marked([41, 42]) == {41}`` (row 42 waits for a bump or a relay).
        """
        return frozenset()

    def forget(self, marks: Collection[int]) -> None:
        """Drop the marks of log rows the relay has deleted (stores whose marks expire skip it)."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Make every entry of this store miss (tests, deploys of incompatible code)."""

    def bumps_in_transaction(self, using: str) -> bool:
        """Return True if this store can bump inside the open transaction of database ``using``.

        Such a store is bumped twice: inside the transaction (atomic with the data, so a crash
        between commit and the post-commit bump cannot lose the invalidation) and after commit.
        """
        return False

    def inspect(self, key: str) -> Stored | None:
        """Return the entry under ``key`` as stored, without validating it, with the current
        version of each of its tags; ``None`` when nothing is stored under ``key``.

        For diagnostics (``manage.py freshcache inspect``): it changes nothing (no LRU touch,
        no deletion of an invalid entry) and need not be atomic. A store that cannot show its
        entries raises ``NotImplementedError`` (the default).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot be inspected")

    def journal(self) -> Journal:
        """This store's journal (``journal.py``): diagnostics shared by the processes that
        share the store. The default keeps it in this process's memory."""
        journal = self.__dict__.get("_journal")
        if journal is None:
            journal = self.__dict__.setdefault("_journal", LocalJournal())
        return journal

    def close(self) -> None:
        """Release connections (called when settings change and at shutdown)."""

    def __repr__(self) -> str:
        from . import redacted  # the URL without its passwords: a repr ends up in logs

        return f"<{type(self).__name__} {self.name!r} {redacted(self.url)!r}>"
