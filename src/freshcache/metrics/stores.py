"""Store call latency: a store wrapped so each of its calls is timed (``METRICS`` on only).

``stores.get_store`` wraps each store it builds while ``METRICS`` is on; stores are rebuilt when
``FRESHCACHE`` changes, so turning metrics off removes the wrapper and its cost.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import Any

from ..stores.base import Hit, Snapshot, Store, Stored
from ..stores.journal import Journal
from ..stores.near import NearCache
from . import get_metrics

__all__ = ["MeteredStore"]


class MeteredStore(Store):
    """``inner`` with every ``lookup``, ``set``, ``bump`` and ``apply`` timed into
    ``freshcache_store_seconds{store,op}``, and its near cache's size (if any) into
    ``freshcache_near_cache_bytes{store}``. Everything else goes to ``inner`` unchanged."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner.name, inner.url)
        self.inner = inner
        self.shared = inner.shared
        self.thread_sensitive = inner.thread_sensitive
        self.blocking = inner.blocking
        self.apply_grace = inner.apply_grace
        metrics = get_metrics()
        self._timers = {
            op: metrics.store_seconds.labels(inner.name, op)
            for op in ("lookup", "set", "bump", "apply")
        }
        near = getattr(inner, "near", None)  # a NearStore's; RedisStore.near is a factory
        near = near if isinstance(near, NearCache) else None
        self._near: Any = near
        self._near_gauge = metrics.near_bytes.labels(inner.name) if near is not None else None
        self._near_seen = -1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def journal(self) -> Journal:
        return self.inner.journal()

    def inspect(self, key: str) -> Stored | None:
        return self.inner.inspect(key)

    def note_near(self) -> None:
        """Set the near-cache gauge if its size changed since last set."""
        if self._near_gauge is not None and self._near.bytes != self._near_seen:
            self._near_seen = self._near.bytes
            self._near_gauge.set(self._near_seen)

    def _timed(self, op: str, started: float) -> None:
        self._timers[op].observe(time.perf_counter() - started)
        self.note_near()

    def lookup(self, key: str) -> Hit | Snapshot:
        started = time.perf_counter()
        try:
            return self.inner.lookup(key)
        finally:
            self._timed("lookup", started)

    def peek(self, key: str) -> Hit | None:
        return self.inner.peek(key)

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
        started = time.perf_counter()
        try:
            return self.inner.set(key, payload, tags, snapshot, timeout)
        finally:
            self._timed("set", started)

    def bump(self, tags: Collection[str], marks: Collection[int] = ()) -> None:
        started = time.perf_counter()
        try:
            self.inner.bump(tags, marks)
        finally:
            self._timed("bump", started)

    def apply(
        self, batch: Sequence[tuple[int, Collection[str]]], bumped: list[int] | None = None
    ) -> int:
        started = time.perf_counter()
        try:
            return self.inner.apply(batch, bumped)
        finally:
            self._timed("apply", started)

    def acquire(self, key: str, ttl: float) -> str | None:
        return self.inner.acquire(key, ttl)

    def release(self, key: str, token: str) -> None:
        self.inner.release(key, token)

    def marked(self, marks: Collection[int]) -> frozenset[int]:
        return self.inner.marked(marks)

    def forget(self, marks: Collection[int]) -> None:
        self.inner.forget(marks)

    def clear(self) -> None:
        try:
            self.inner.clear()
        finally:
            self.note_near()

    def bumps_in_transaction(self, using: str) -> bool:
        return self.inner.bumps_in_transaction(using)

    def close(self) -> None:
        self.inner.close()

    def __repr__(self) -> str:
        return repr(self.inner)
