"""The one place that reads, validates, computes and conditionally stores.

The freshness protocol, for one cached computation ``fetch(key, compute)``:

1. **Bypass** when the current transaction has written (its rows are invisible to others, and
   others' cached values do not show them): compute, serve, store nothing.
2. **Look up** ``key`` in the store. A hit is served only if every tag it depends on still has
   the version recorded with it (the store validates this atomically), and only if, when it
   arrives, this process's relay knows of no row it could not apply, failed no attempt since
   the lookup was sent, and is not applying rows it read longer ago than the store's
   ``apply_grace`` (``Relay.hit_refused``; else it computes uncached). The hit's tags are added
   to the enclosing scope, so an outer cached value depends on them too.
3. On a miss the store hands back a **snapshot** of the global sequence, taken *before* any data
   is read. ``compute()`` then runs inside a new scope that collects the tags of everything read.
4. **Store** the value only if its encoded payload fits ``MAX_ENTRY_SIZE`` (else it is served
   with reason ``"too large"``), nothing made the scope uncacheable, the transaction did not write
   meanwhile, the connection's snapshot is not older than ours (REPEATABLE READ or SERIALIZABLE
   inside ``atomic()``), and — checked atomically by the store — no tag was bumped after the
   snapshot. A writer bumps only after its COMMIT, so a tag version no newer than the snapshot
   means the write was committed before the computation read anything.

Between 2 and 3, **single flight** (``flight.py``): one caller per key takes a lease in the
store and computes; the others wait a bounded time, serving only what a later lookup validates,
and compute with a snapshot taken after their wait if the holder stored nothing.

Any store failure turns into an uncached computation: never an exception for the caller, never
an old value. Payloads put into shared stores are signed with an HMAC keyed from ``SECRET_KEY``
and verified before decoding; an unverifiable, truncated or old-format payload is a miss.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from asgiref.sync import sync_to_async
from django.db import DatabaseError, connections

from . import counters, events, flight, hooks, watermark
from . import scope as scopes
from .conf import get_settings
from .flight import Claim
from .invalidation import in_dirty_transaction
from .log.relay import get_relay
from .payload import (  # noqa: F401 (re-exported: core's public names, and tests)
    FORMAT,
    PICKLE,
    Codec,
    PickleCodec,
    _decode,
    _encode,
    _open,
    _seal,
    _unsigned,
    store_key,
)
from .scope import add_tags, forced_bypass, open_scope
from .stores import Hit, Snapshot, Store, StoreFull, StoreUnavailable, get_store
from .transactions import in_transaction

__all__ = ["Codec", "Outcome", "PickleCodec", "afetch", "afind", "fetch", "find"]

logger = logging.getLogger("freshcache")

T = TypeVar("T")

#: The bypass reason while this process's relay has log rows it could not apply yet.
LOG_NOT_APPLIED = "invalidation log not yet applied"
#: The bypass reason of a hit refused on arrival: while its lookup was in flight, this process's
#: relay knew of log rows it had not applied, or failed to apply some (``Relay.hit_refused``).
HIT_BEFORE_LOG = "hit arrived while the invalidation log was not applied"
#: The reason a value is served but not stored: its payload exceeds ``MAX_ENTRY_SIZE``.
TOO_LARGE = "too large"
#: The reason a value is not stored because the store refuses to grow (``StoreFull``).
STORE_FULL = "store full"

@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """What :func:`fetch` did: the value, hit or not, stored or not and why not."""

    value: T
    hit: bool
    stored: bool
    reason: str | None
    tags: frozenset[str]


def _snapshot_too_old() -> bool:
    """True if a connection is inside a transaction whose snapshot may predate ours.

    PostgreSQL and MySQL at READ COMMITTED take a new snapshot per statement, so a statement run
    after our sequence read sees every commit before it. Any other level (or SQLite, whose
    transaction keeps one snapshot) may have taken its snapshot earlier.
    """
    for conn in connections.all(initialized_only=True):
        if not in_transaction(conn):
            continue
        if conn.vendor == "postgresql":
            if getattr(getattr(conn.connection, "info", None), "transaction_status", None) == 0:
                continue  # IDLE: no statement yet, so no snapshot older than ours
            # Asked, not read from settings: SET TRANSACTION may have changed it.
            try:
                with conn.cursor() as cursor:
                    cursor.execute("SELECT current_setting('transaction_isolation')")
                    if cursor.fetchone()[0] != "read committed":
                        return True
            except DatabaseError:  # an aborted transaction: answer, store nothing
                return True
        elif conn.vendor == "mysql":
            options = conn.settings_dict.get("OPTIONS", {})
            if options.get("isolation_level", "read committed") != "read committed":
                return True
        else:
            return True
    return False


class _Plan:
    """The steps of :func:`fetch` that do not depend on sync or async execution."""

    def __init__(
        self, key: str, store: str | Store | None, codec: Codec | None, timeout: float | None
    ) -> None:
        self.settings = get_settings()
        self.store = store if isinstance(store, Store) else get_store(store)
        self.codec = codec or PICKLE
        self.key = key
        self.skey = store_key(key)
        self.timeout = self.settings.timeout if timeout is None else timeout
        self.read_at = 0

    def bypass_reason(self, *, wait: bool = True) -> str | None:
        if not self.settings.enabled:
            return "disabled"
        if scopes.forcing:  # a shadow render is running somewhere (http/shadow.py)
            forced = forced_bypass()
            if forced is not None:
                return forced
        if in_dirty_transaction():
            return "transaction has written"
        if get_relay().blocks_reads(wait=wait):
            return LOG_NOT_APPLIED
        return None

    def lookup(self) -> Hit | Snapshot | str:
        self.read_at = watermark.generation()  # a hit is current as of its lookup
        # A lookup may wait in the store (Redis paused for writes: our lookup script counts as
        # a write) while a write returns whose bump failed, and be answered with the old entry
        # before any relay applied the write's log row. The hit is checked against this
        # process's relay when it arrives (docs/internals.md, "The guarantee, exactly").
        relay = get_relay()
        failures = relay.failures
        try:
            found = self.store.lookup(self.skey)
        except Exception as exc:
            return _store_failed(self.store, exc)
        if isinstance(found, Hit) and relay.hit_refused(failures):
            return HIT_BEFORE_LOG
        return found

    def peek(self) -> Hit | str | None:
        self.read_at = watermark.generation()
        relay = get_relay()
        failures = relay.failures
        try:
            found = self.store.peek(self.skey)
        except Exception as exc:
            _store_failed(self.store, exc)
            return None
        if found is not None and relay.hit_refused(failures):
            return HIT_BEFORE_LOG
        return found

    def begin(self) -> Snapshot | str:
        try:
            return self.store.begin()
        except Exception as exc:
            return _store_failed(self.store, exc)

    def decode(self, hit: Hit) -> tuple[bool, Any]:
        memo = hit.memo.get("value") if hit.memo else None
        if memo is not None and memo[0] is self.codec and memo[1] == self.key:
            # Decoded before (``_decode``): nothing is unpickled, so nothing needs stamping.
            return True, memo[2]
        # Model instances unpickled from the hit are stamped as read when the lookup began.
        with watermark.decoding(self.read_at):
            return _decode(self.store, hit, self.key, self.codec)

    def refusal(self, scope_reason: str | None) -> str | None:
        if scope_reason is not None:
            counters.incr("stores_skipped_uncacheable")
            return scope_reason
        if in_dirty_transaction():
            counters.incr("stores_skipped_uncacheable")
            return "transaction has written"
        if _snapshot_too_old():
            counters.incr("stores_skipped_uncacheable")
            return "transaction snapshot predates the computation"
        return None

    def save(self, value: Any, tags: frozenset[str], snapshot: Snapshot) -> tuple[bool, str | None]:
        try:
            payload = _encode(self.store, value, self.key, self.codec)
        except Exception as exc:
            counters.incr("stores_skipped_uncacheable")
            return False, f"value cannot be encoded: {exc}"
        limit = self.settings.max_entry_size
        if limit is not None and len(payload) > limit:
            # Checked on what the store would hold (signed, encoded), so the bound is in bytes
            # of memory, not of the value's repr. Still served: the caller has it already.
            counters.incr("stores_skipped_too_large")
            return False, TOO_LARGE
        try:
            stored = self.store.set(self.skey, payload, tags, snapshot, self.timeout)
        except StoreFull:
            counters.incr("store_errors")
            return False, STORE_FULL
        except Exception as exc:
            return False, _store_failed(self.store, exc)
        if stored:
            counters.incr("stores")
            return True, None
        counters.incr("stores_skipped_race")
        return False, "a dependency changed while computing"


_unexpected: set[tuple[str, str]] = set()


def _store_failed(store: Store, exc: Exception) -> str:
    """A store call failed: compute uncached. ``StoreUnavailable`` is the expected kind; any
    other error (a bug, a driver refusing a setting) is logged once per store and kind, never
    raised into the request."""
    counters.incr("store_errors")
    kind = (store.name, type(exc).__name__)
    if not isinstance(exc, StoreUnavailable) and kind not in _unexpected:
        _unexpected.add(kind)
        logger.warning(
            "freshcache: store %r failed unexpectedly; computing uncached", store.name, exc_info=exc
        )
    return "store unavailable"


def _fetch(
    key: str,
    compute: Callable[[], T],
    *,
    store: str | Store | None = None,
    codec: Codec | None = None,
    timeout: float | None = None,
) -> Outcome[T]:
    """Return the cached value of ``key``, computing and (if safe) storing it on a miss.

    >>> fetch("greeting", lambda: "hello").value
    'hello'
    """
    plan = _Plan(key, store, codec, timeout)
    reason = plan.bypass_reason()
    looked: Hit | Snapshot | Claim | str = reason if reason is not None else plan.lookup()
    if isinstance(looked, Snapshot):
        looked = flight.run(flight.claim(plan, looked))
    if isinstance(looked, Hit):
        ok, value = plan.decode(looked)
        if ok:
            counters.incr("hits")
            add_tags(looked.tags)
            return Outcome(value, True, False, None, looked.tags)
        looked = plan.begin()
    if isinstance(looked, str):
        counters.incr("bypasses")
        with open_scope(key, shared=plan.store.shared) as scope:
            value = compute()
        return Outcome(value, False, False, looked, frozenset(scope.tags))
    claimed = looked if isinstance(looked, Claim) else Claim(looked)
    try:
        counters.incr("misses")
        watermark.observe(plan.store, claimed.snapshot)
        hooks.run("after_snapshot", key=key, snapshot=claimed.snapshot)
        with open_scope(key, shared=plan.store.shared) as scope:
            scope.snapshot, scope.store = claimed.snapshot, plan.store
            value = compute()
        hooks.run("after_compute", key=key, tags=frozenset(scope.tags))
        tags = frozenset(scope.tags)
        refused = plan.refusal(scope.uncacheable)
        if refused is not None:
            return Outcome(value, False, False, refused, tags)
        against = watermark.stored_against(scope, claimed.snapshot, plan.store)
        if isinstance(against, str):
            return Outcome(value, False, False, against, tags)
        stored, why = plan.save(value, tags, against)
        return Outcome(value, False, stored, why, tags)
    finally:
        flight.release(plan, claimed.token)


async def _afetch(
    key: str,
    compute: Callable[[], Awaitable[T]],
    *,
    store: str | Store | None = None,
    codec: Codec | None = None,
    timeout: float | None = None,
) -> Outcome[T]:
    """The ``async`` form of :func:`fetch`: ``compute`` is a coroutine function.

    Store calls that block (Redis, the database) run in a worker thread; the scope is a
    ``ContextVar``, so the tags collected in this task never mix with another task's.
    """
    plan = _Plan(key, store, codec, timeout)

    def off_loop(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        if not plan.store.blocking:

            async def direct(*args: Any) -> Any:
                return fn(*args)

            return direct
        return sync_to_async(fn, thread_sensitive=plan.store.thread_sensitive)

    reason = plan.bypass_reason(wait=False)
    if reason == LOG_NOT_APPLIED:
        # The relay just started (or waits for a store): wait for its first drain off the loop.
        await sync_to_async(get_relay().wait_first_drain, thread_sensitive=False)()
        reason = plan.bypass_reason(wait=False)
    # A near cache's hit needs no thread: it is answered on the loop.
    looked: Hit | Snapshot | Claim | str = (
        reason if reason is not None else plan.peek() or await off_loop(plan.lookup)()
    )
    if isinstance(looked, Snapshot):
        looked = await flight.arun(flight.claim(plan, looked), off_loop)
    if isinstance(looked, Hit):
        ok, value = plan.decode(looked)
        if ok:
            counters.incr("hits")
            add_tags(looked.tags)
            return Outcome(value, True, False, None, looked.tags)
        begun: Snapshot | str = await off_loop(plan.begin)()
        looked = begun
    if isinstance(looked, str):
        counters.incr("bypasses")
        with open_scope(key, shared=plan.store.shared) as scope:
            value = await compute()
        return Outcome(value, False, False, looked, frozenset(scope.tags))
    claimed = looked if isinstance(looked, Claim) else Claim(looked)
    try:
        counters.incr("misses")
        watermark.observe(plan.store, claimed.snapshot)
        hooks.run("after_snapshot", key=key, snapshot=claimed.snapshot)
        with open_scope(key, shared=plan.store.shared) as scope:
            scope.snapshot, scope.store = claimed.snapshot, plan.store
            value = await compute()
        hooks.run("after_compute", key=key, tags=frozenset(scope.tags))
        tags = frozenset(scope.tags)
        refused = plan.refusal(scope.uncacheable)
        if refused is not None:
            return Outcome(value, False, False, refused, tags)
        against = watermark.stored_against(scope, claimed.snapshot, plan.store)
        if isinstance(against, str):
            return Outcome(value, False, False, against, tags)
        stored, why = await off_loop(plan.save)(value, tags, against)
        return Outcome(value, False, stored, why, tags)
    finally:
        await off_loop(flight.release)(plan, claimed.token)


def find(
    key: str, *, store: str | Store | None = None, codec: Codec | None = None
) -> Outcome[Any] | None:
    """The hit for ``key``, or ``None`` (a miss, or the store may not be used now): one lookup
    (none for a near cache's hit), checked as every hit is (caching on, no write in this
    transaction, the relay's check), never computing, never storing, never counted (the caller
    counts what it serves)."""
    plan = _Plan(key, store, codec, None)
    if plan.bypass_reason(wait=False) is not None:
        return None
    return _found(plan, plan.lookup())


async def afind(
    key: str, *, store: str | Store | None = None, codec: Codec | None = None
) -> Outcome[Any] | None:
    """The ``async`` form of :func:`find`: a near cache's hit is answered on the loop, any
    other lookup in a worker thread (as :func:`afetch` does)."""
    plan = _Plan(key, store, codec, None)
    if plan.bypass_reason(wait=False) is not None:
        return None
    found: Hit | Snapshot | str | None = plan.peek()
    if found is None:
        lookup = plan.lookup
        if plan.store.blocking:
            thread_sensitive = plan.store.thread_sensitive
            found = await sync_to_async(lookup, thread_sensitive=thread_sensitive)()
        else:
            found = lookup()
    return _found(plan, found)


def _found(plan: _Plan, found: Hit | Snapshot | str | None) -> Outcome[Any] | None:
    if not isinstance(found, Hit):
        return None
    ok, value = plan.decode(found)
    return Outcome(value, True, False, None, found.tags) if ok else None


def fetch(
    key: str,
    compute: Callable[[], T],
    *,
    store: str | Store | None = None,
    codec: Codec | None = None,
    timeout: float | None = None,
    kind: str = "value",
    name: str | None = None,
) -> Outcome[T]:
    """Return the cached value of ``key``, computing and (if safe) storing it on a miss.

    ``kind`` (``"page"``, ``"fragment"``, ``"function"``, ``"value"``) and ``name`` (bounded: by
    default ``key`` up to its first ``:``) say what this is to outcome listeners (``events.py``).

    >>> fetch("greeting", lambda: "hello").value
    'hello'
    """
    if not events.listening:
        return _fetch(key, compute, store=store, codec=codec, timeout=timeout)
    return events.observe(
        lambda timed: _fetch(key, timed, store=store, codec=codec, timeout=timeout),
        compute,
        kind,
        name or events.default_name(key),
        key,
    )


async def afetch(
    key: str,
    compute: Callable[[], Awaitable[T]],
    *,
    store: str | Store | None = None,
    codec: Codec | None = None,
    timeout: float | None = None,
    kind: str = "value",
    name: str | None = None,
) -> Outcome[T]:
    """The ``async`` form of :func:`fetch`: ``compute`` is a coroutine function."""
    if not events.listening:
        return await _afetch(key, compute, store=store, codec=codec, timeout=timeout)
    return await events.aobserve(
        lambda timed: _afetch(key, timed, store=store, codec=codec, timeout=timeout),
        compute,
        kind,
        name or events.default_name(key),
        key,
    )
