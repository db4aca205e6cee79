"""Single flight: one computation of a key at a time, across every process sharing the store.

Without it, a page invalidated under load is rendered by every request that misses before the
first render is stored (issue 9, item 6: 31 renders for 200 requests on gunicorn, and under
ASGI a database connection per render until PostgreSQL refused clients). The protocol, run by
:func:`freshcache.core.fetch` on a miss (never on a bypass: a transaction that has written, a
relay that blocks reads, a store that cannot be reached):

1. **Lease.** ``store.acquire(key, LEASE_SECONDS)``. The winner (the *holder*) looks the key up
   once more (another holder may have stored between our miss and our lease: that hit is
   served), computes with the snapshot of that second lookup, stores as always, and releases
   the lease, also when the computation raises.
2. **Wait.** Everyone else sleeps (5 ms, doubling up to 50 ms; ``asyncio.sleep`` in ``afetch``,
   with no database connection held) and looks the key up again through the normal, validated
   :meth:`~freshcache.stores.base.Store.lookup`. A hit is served.
3. **Go ahead.** A waiter that finds the lease gone with still no entry (the holder did not
   store: an uncacheable response, a race refused by the store, an exception; or it died and
   its lease expired) computes itself, without a lease: so a page that is never stored costs
   concurrent requests one wait, not a queue. So does a waiter still waiting after
   ``LEASE_WAIT_SECONDS``.

**Why a waiter stays fresh.** A waiter is never handed the holder's value: it takes only what
``lookup`` validates, which is exactly what a request arriving at that moment would get (every
tag still at the version recorded, so nothing it depends on was written since it was built; and
the holder's ``set`` was refused if a write landed after the holder's snapshot). A waiter that
computes takes its snapshot from a lookup made *after* its wait, never one from before it.

**Never in the way.** A lease error (store down, a reply that makes no sense) means no single
flight: compute, as before. A dead holder blocks nobody longer than ``LEASE_WAIT_SECONDS``, and
nobody at all after its lease's ``LEASE_SECONDS``. Either setting at 0 turns single flight off.

The steps are written once, as a generator of :class:`Sleep` and :class:`Call` actions;
:func:`run` and :func:`arun` carry them out for sync and async callers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, Protocol

from . import counters
from .conf import FreshcacheSettings
from .stores import Hit, Snapshot, Store
from .stores.base import NO_LEASE

__all__ = ["Claim", "arun", "claim", "release", "run"]

logger = logging.getLogger("freshcache")

#: The first pause of a waiter, and the longest (seconds): polls back off from one to the other.
FIRST_PAUSE = 0.005
LONGEST_PAUSE = 0.05


class Lookups(Protocol):
    """What single flight needs from the core's plan of one ``fetch``."""

    settings: FreshcacheSettings
    store: Store
    skey: str

    def lookup(self) -> Hit | Snapshot | str: ...

    def bypass_reason(self, *, wait: bool = True) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Claim:
    """Compute with ``snapshot``; ``token`` is the lease to release afterwards (or NO_LEASE)."""

    snapshot: Snapshot
    token: str = NO_LEASE


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Call:
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()


Steps = Generator[Sleep | Call, Any, Claim | Hit | str]


def _acquire(plan: Lookups) -> str | None:
    """The lease's token, ``None`` if another holds it, ``NO_LEASE`` if leases fail."""
    try:
        return plan.store.acquire(plan.skey, plan.settings.lease_seconds)
    except Exception:  # never in the way: no single flight, just compute
        logger.debug("freshcache: no lease on %s", plan.skey, exc_info=True)
        return NO_LEASE


def release(plan: Lookups, token: str) -> None:
    """Give the lease back; never raises (an unreleased lease ends with its time to live)."""
    if token == NO_LEASE:
        return
    try:
        plan.store.release(plan.skey, token)
    except Exception:
        logger.debug("freshcache: lease on %s not released", plan.skey, exc_info=True)


def claim(plan: Lookups, snapshot: Snapshot) -> Steps:
    """After a miss with ``snapshot``: the steps that end in a hit to serve, a reason to
    compute uncached, or a :class:`Claim` to compute (and store) with."""
    settings = plan.settings
    if settings.lease_seconds <= 0 or settings.lease_wait_seconds <= 0:
        return Claim(snapshot)
    token = yield Call(_acquire, (plan,))
    if token == NO_LEASE:
        return Claim(snapshot)
    if token is not None:
        return (yield from _hold(plan, token))
    counters.incr("lease_waits")
    deadline = time.monotonic() + settings.lease_wait_seconds
    pause = FIRST_PAUSE
    while True:
        yield Sleep(max(0.0, min(pause, deadline - time.monotonic())))
        pause = min(pause * 2, LONGEST_PAUSE)
        reason = plan.bypass_reason(wait=False)
        if reason is not None:
            return reason
        looked = yield Call(plan.lookup)
        if not isinstance(looked, Snapshot):
            return looked  # a valid hit, or the store failed: compute uncached
        if time.monotonic() >= deadline:
            counters.incr("lease_timeouts")
            return Claim(looked)
        token = yield Call(_acquire, (plan,))
        if token is None:
            continue
        if token == NO_LEASE:
            return Claim(looked)
        # The lease is gone: its holder finished without storing, or died. Look once more (it
        # may have stored between our lookup and its release), then compute without a lease.
        again = yield Call(plan.lookup)
        yield Call(release, (plan, token))
        return again if not isinstance(again, Snapshot) else Claim(again)


def _hold(plan: Lookups, token: str) -> Steps:
    """The holder's second lookup: a value stored meanwhile is served, else it computes."""
    looked = yield Call(plan.lookup)
    if isinstance(looked, Snapshot):
        return Claim(looked, token)
    yield Call(release, (plan, token))
    return looked


def run(steps: Steps) -> Claim | Hit | str:
    """Carry out ``steps`` in this thread."""
    try:
        action = next(steps)
        while True:
            if isinstance(action, Sleep):
                time.sleep(action.seconds)
                action = steps.send(None)
            else:
                action = steps.send(action.fn(*action.args))
    except StopIteration as done:
        return done.value


async def arun(
    steps: Steps, off_loop: Callable[[Callable[..., Any]], Callable[..., Awaitable[Any]]]
) -> Claim | Hit | str:
    """Carry out ``steps`` without blocking the event loop: store calls through ``off_loop``."""
    try:
        action = next(steps)
        while True:
            if isinstance(action, Sleep):
                await asyncio.sleep(action.seconds)
                action = steps.send(None)
            else:
                action = steps.send(await off_loop(action.fn)(*action.args))
    except StopIteration as done:
        return done.value
