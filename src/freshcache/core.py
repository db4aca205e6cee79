"""The one place that reads, validates, computes and conditionally stores.

The freshness protocol, for one cached computation ``fetch(key, compute)``:

1. **Bypass** when the current transaction has written (its rows are invisible to others, and
   others' cached values do not show them): compute, serve, store nothing.
2. **Look up** ``key`` in the store. A hit is served only if every tag it depends on still has
   the version recorded with it (the store validates this atomically). The hit's tags are added
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

import hashlib
import hmac
import logging
import pickle
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Generic, Protocol, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.db import connections

from . import counters, flight, hooks
from .conf import get_settings
from .flight import Claim
from .invalidation import in_dirty_transaction
from .log.relay import get_relay
from .scope import add_tags, open_scope
from .stores import Hit, Snapshot, Store, StoreFull, StoreUnavailable, get_store

__all__ = ["Codec", "Outcome", "PickleCodec", "afetch", "fetch"]

logger = logging.getLogger("freshcache")

T = TypeVar("T")

#: The bypass reason while this process's relay has log rows it could not apply yet.
LOG_NOT_APPLIED = "invalidation log not yet applied"
#: The reason a value is served but not stored: its payload exceeds ``MAX_ENTRY_SIZE``.
TOO_LARGE = "too large"
#: The reason a value is not stored because the store refuses to grow (``StoreFull``).
STORE_FULL = "store full"

#: Bumped whenever the payload layout changes: older payloads then read as misses.
FORMAT = b"fc1"
_MAC_SIZE = 32


class Codec(Protocol):
    """Turns a value into bytes and back. ``loads`` may raise on bad data (a miss)."""

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class PickleCodec:
    """The default codec for ``@cached`` results (model instances, lists, dicts...)."""

    def dumps(self, value: Any) -> bytes:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)  # only ever after the HMAC was verified


PICKLE = PickleCodec()


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """What :func:`fetch` did: the value, hit or not, stored or not and why not."""

    value: T
    hit: bool
    stored: bool
    reason: str | None
    tags: frozenset[str]


@lru_cache(maxsize=4)
def _mac_key(secret: str) -> bytes:
    return hashlib.blake2b(secret.encode(), person=b"freshcache-mac", digest_size=32).digest()


def _seal(data: bytes, key: str) -> bytes:
    # The MAC covers the entry key too, so a payload cannot be replayed under another key.
    mac = hmac.new(_mac_key(django_settings.SECRET_KEY), key.encode() + b"\0" + data, "sha256")
    return FORMAT + mac.digest() + data


def _open(payload: bytes, key: str) -> bytes | None:
    if not payload.startswith(FORMAT) or len(payload) < len(FORMAT) + _MAC_SIZE:
        return None
    mac = payload[len(FORMAT) : len(FORMAT) + _MAC_SIZE]
    data = payload[len(FORMAT) + _MAC_SIZE :]
    expected = hmac.new(
        _mac_key(django_settings.SECRET_KEY), key.encode() + b"\0" + data, "sha256"
    ).digest()
    return data if hmac.compare_digest(mac, expected) else None


def store_key(key: str) -> str:
    """The fixed-length name under which ``key`` is kept in a store."""
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=20).hexdigest()


def _snapshot_too_old() -> bool:
    """True if a connection is inside a transaction whose snapshot may predate ours.

    PostgreSQL and MySQL at READ COMMITTED take a new snapshot per statement, so a statement run
    after our sequence read sees every commit before it. Any other level (or SQLite, whose
    transaction keeps one snapshot) may have taken its snapshot earlier.
    """
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            continue
        if conn.vendor == "postgresql":
            # Asked, not read from settings: SET TRANSACTION may have changed it.
            with conn.cursor() as cursor:
                cursor.execute("SELECT current_setting('transaction_isolation')")
                if cursor.fetchone()[0] != "read committed":
                    return True
        elif conn.vendor == "mysql":
            options = conn.settings_dict.get("OPTIONS", {})
            if options.get("isolation_level", "read committed") != "read committed":
                return True
        else:
            return True
    return False


def _decode(store: Store, hit: Hit, key: str, codec: Codec) -> tuple[bool, Any]:
    data = _open(hit.payload, key) if store.shared else _unsigned(hit.payload)
    if data is None:
        counters.incr("corrupt_entries")
        return False, None
    try:
        return True, codec.loads(data)
    except Exception:  # a payload that verified but does not decode (an old class layout)
        counters.incr("corrupt_entries")
        logger.debug("freshcache: undecodable entry %s", key, exc_info=True)
        return False, None


def _unsigned(payload: bytes) -> bytes | None:
    return payload[len(FORMAT) :] if payload.startswith(FORMAT) else None


def _encode(store: Store, value: Any, key: str, codec: Codec) -> bytes:
    data = codec.dumps(value)
    return _seal(data, key) if store.shared else FORMAT + data


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

    def bypass_reason(self, *, wait: bool = True) -> str | None:
        if not self.settings.enabled:
            return "disabled"
        if in_dirty_transaction():
            return "transaction has written"
        if get_relay().blocks_reads(wait=wait):
            return LOG_NOT_APPLIED
        return None

    def lookup(self) -> Hit | Snapshot | str:
        try:
            return self.store.lookup(self.skey)
        except Exception as exc:
            return _store_failed(self.store, exc)

    def begin(self) -> Snapshot | str:
        try:
            return self.store.begin()
        except Exception as exc:
            return _store_failed(self.store, exc)

    def decode(self, hit: Hit) -> tuple[bool, Any]:
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


def fetch(
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
        hooks.run("after_snapshot", key=key, snapshot=claimed.snapshot)
        with open_scope(key, shared=plan.store.shared) as scope:
            value = compute()
        hooks.run("after_compute", key=key, tags=frozenset(scope.tags))
        tags = frozenset(scope.tags)
        refused = plan.refusal(scope.uncacheable)
        if refused is not None:
            return Outcome(value, False, False, refused, tags)
        stored, why = plan.save(value, tags, claimed.snapshot)
        return Outcome(value, False, stored, why, tags)
    finally:
        flight.release(plan, claimed.token)


async def afetch(
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
    looked: Hit | Snapshot | Claim | str = (
        reason if reason is not None else await off_loop(plan.lookup)()
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
        hooks.run("after_snapshot", key=key, snapshot=claimed.snapshot)
        with open_scope(key, shared=plan.store.shared) as scope:
            value = await compute()
        hooks.run("after_compute", key=key, tags=frozenset(scope.tags))
        tags = frozenset(scope.tags)
        refused = plan.refusal(scope.uncacheable)
        if refused is not None:
            return Outcome(value, False, False, refused, tags)
        stored, why = await off_loop(plan.save)(value, tags, claimed.snapshot)
        return Outcome(value, False, stored, why, tags)
    finally:
        await off_loop(flight.release)(plan, claimed.token)
