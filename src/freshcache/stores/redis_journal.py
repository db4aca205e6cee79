"""The journal (``journal.py``) of a Redis store: a list per ring (``LPUSH`` then ``LTRIM``)
and one hash of counters (``HINCRBYFLOAT``), under the store's prefix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from .base import StoreUnavailable
from .journal import RINGS, Journal

if TYPE_CHECKING:
    from .redis import RedisStore

__all__ = ["CHUNK", "RedisJournal"]

#: Bytes of records per ``LPUSH``, at most (plus one record).
CHUNK = 16 * 1024


class RedisJournal(Journal):
    def __init__(self, store: RedisStore, base: str) -> None:
        self._store = store
        self._client = store._client
        self._ring_prefix = f"{base}:j:"
        self._counts_key = f"{base}:j:counts"

    def _errors(self, what: str, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(f"{self._store!r}: journal {what}: {exc}")

    def push(self, ring: str, records: Sequence[str], keep: int) -> None:
        if not records:
            return
        key = self._ring_prefix + ring
        try:
            pipe = self._client.pipeline(transaction=False)
            # In commands of at most CHUNK bytes: Redis checks maxmemory before each command,
            # so one command of 500 records (up to ~1 MB) could overshoot a full Redis by all
            # of it (tests/test_memory_bounds.py allows 64 KB).
            chunk: list[str] = []
            size = 0
            for record in records:
                chunk.append(record)
                size += len(record)
                if size >= CHUNK:
                    pipe.lpush(key, *chunk)
                    chunk, size = [], 0
            if chunk:
                pipe.lpush(key, *chunk)
            pipe.ltrim(key, 0, keep - 1)
            pipe.execute()
        except self._store._redis_errors as exc:
            raise self._errors("push", exc) from exc

    def read(self, ring: str, limit: int) -> list[str]:
        try:
            found = self._client.lrange(self._ring_prefix + ring, 0, max(0, limit - 1))
        except self._store._redis_errors as exc:
            raise self._errors("read", exc) from exc
        return [r.decode() if isinstance(r, bytes) else str(r) for r in found]

    def add(self, counts: Mapping[str, float]) -> None:
        if not counts:
            return
        try:
            pipe = self._client.pipeline(transaction=False)
            for name, value in counts.items():
                pipe.hincrbyfloat(self._counts_key, name, value)
            pipe.execute()
        except self._store._redis_errors as exc:
            raise self._errors("add", exc) from exc

    def counts(self) -> dict[str, float]:
        try:
            found = self._client.hgetall(self._counts_key)
        except self._store._redis_errors as exc:
            raise self._errors("counts", exc) from exc
        out: dict[str, float] = {}
        for name, value in found.items():
            try:
                out[name.decode() if isinstance(name, bytes) else str(name)] = float(value)
            except ValueError:
                continue  # not ours: ignored
        return out

    def reset(self) -> None:
        try:
            keys = [self._counts_key] + [self._ring_prefix + ring for ring in RINGS]
            self._client.delete(*keys)
        except self._store._redis_errors as exc:
            raise self._errors("reset", exc) from exc

