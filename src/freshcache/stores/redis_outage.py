"""What the Redis store does while Redis fails: the circuit breaker and the replay of bumps.

Socket timeouts are short, and the breaker stops *lookups and stores* for ``BREAKER_SECONDS``
after an error, so an outage costs a bounded wait, never a hang. Bumps ignore the breaker: each
is attempted (bounded by the socket timeout), because a bump skipped while Redis is already back
is an invalidation other processes never see. A bump that fails stays in the invalidation log,
where a relay applies it once Redis answers (``log/``); a bump that has no log row (no log
database) is also remembered here and replayed before this process talks to Redis again (past
:data:`MAX_FAILED_TAGS`, a new epoch). One warning per outage.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, TypeVar

from .base import StoreFull, StoreUnavailable
from .redis_memory import out_of_memory

if TYPE_CHECKING:
    from .redis import RedisStore

__all__ = ["MAX_FAILED_TAGS", "Outage"]

# The store's own logger: these are the Redis store's warnings.
logger = logging.getLogger("freshcache.stores.redis")

T = TypeVar("T")

#: Past this many failed tag bumps, recovery starts a new epoch instead of replaying them.
MAX_FAILED_TAGS = 10_000


class Outage:
    """The breaker of one :class:`~freshcache.stores.redis.RedisStore`, and the bumps it owes."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._open_until = 0.0  # circuit breaker: no calls before this monotonic time
        self._failed_tags: set[str] = set()
        # A counter, not a flag: a rotation requested while one is being made is not lost.
        self._rotate_needed = 0
        self._retry_timer: threading.Timer | None = None

    def call(self, fn: Callable[[], T], *, breaker: bool = True) -> T:
        """Run ``fn`` (one round trip) after any replay owed; raise :class:`StoreUnavailable`
        (or :class:`StoreFull`) instead of a Redis error."""
        store = self.store
        if breaker and self._open_until and time.monotonic() < self._open_until:
            raise StoreUnavailable(f"{store!r} is unavailable (circuit open)")
        try:
            if self._failed_tags or self._rotate_needed:
                self._repair()
            result = fn()
        except store._redis_errors as exc:
            if out_of_memory(exc):
                # Redis answers, and still serves reads: no reason to stop looking up.
                raise StoreFull(str(exc)) from exc
            self._trip(exc)
            raise StoreUnavailable(str(exc)) from exc
        if self._open_until:
            with self._lock:
                if self._open_until:
                    self._open_until = 0.0
                    logger.warning("freshcache store %r is reachable again", store.name)
        return result

    def _trip(self, exc: BaseException) -> None:
        with self._lock:
            first = not self._open_until
            self._open_until = time.monotonic() + self.store.breaker_seconds
        if first:
            logger.warning(
                "freshcache store %r is unreachable (%s); computing uncached for the next %.1fs",
                self.store.name,
                exc,
                self.store.breaker_seconds,
            )

    def _repair(self) -> None:
        """Replay the bumps that failed during an outage, before anything else is served.

        The failed tags stay recorded until the replay succeeded: a concurrent caller that
        finds them replays them too (a harmless extra bump) instead of serving an entry the
        replay in flight is about to invalidate.
        """
        with self._lock:
            tags = set(self._failed_tags)
            rotate = self._rotate_needed
        if rotate:
            self.store._rotate()
        elif tags:
            self.store._run_bump(tags)
        with self._lock:
            self._failed_tags -= tags
            if self._rotate_needed == rotate:
                self._rotate_needed = 0
        logger.warning(
            "freshcache store %r: replayed %s after an outage",
            self.store.name,
            "a new epoch" if rotate else f"{len(tags)} failed tag bump(s)",
        )

    def remember_failed(self, tags: Collection[str], rotate: bool = False) -> None:
        """Owe a bump of ``tags`` (or, with ``rotate``, a new epoch) until Redis answers."""
        with self._lock:
            self._failed_tags.update(tags)
            if rotate or len(self._failed_tags) > MAX_FAILED_TAGS:
                self._rotate_needed += 1
                self._failed_tags = set()
            if self._retry_timer is None or not self._retry_timer.is_alive():
                self._retry_timer = threading.Timer(self.store.breaker_seconds, self._retry_repair)
                self._retry_timer.daemon = True
                self._retry_timer.start()

    def _retry_repair(self) -> None:
        # A real command, not a no-op: the probe must not report Redis reachable (and close the
        # breaker) merely because another thread took the pending bumps to replay them.
        try:
            self.call(self.store.probe)
        except StoreUnavailable:
            with self._lock:
                self._retry_timer = None
            if self._failed_tags or self._rotate_needed:
                self.remember_failed(())

    @property
    def pending(self) -> bool:
        """True while bumps that failed during an outage wait to be replayed."""
        return bool(self._failed_tags or self._rotate_needed)

    def close(self) -> None:
        """Stop the timer that retries the replay."""
        if self._retry_timer is not None:
            self._retry_timer.cancel()
