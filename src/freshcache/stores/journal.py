"""The journal of a store: what ``manage.py freshcache why|stats|doctor`` and the dashboard read.

Kept beside the entries, so that every process that shares a store also shares its journal:

* **rings**: bounded lists of records (JSON text), newest first: ``"invalidations"`` (recent
  bumps with their tags, origin and source) and ``"slow"`` (the slowest misses);
* **counters**: named floats that only grow (hits, misses, stored, bypasses and seconds per
  ``kind``/``name``, and the reasons a name was not stored).

A journal is diagnostics only: it never holds anything freshness depends on, and a store that
cannot take a push loses it (``freshcache.journal`` logs that once and goes on). Each store
type has its own (``redis_journal.py``, ``database_journal.py``); :class:`LocalJournal` is the
process-local one of ``memory://`` (a command run in another process sees none of it) and of
any store that has no journal of its own.
"""

from __future__ import annotations

import abc
import threading
from collections import deque
from collections.abc import Mapping, Sequence

__all__ = ["RINGS", "Journal", "LocalJournal"]

#: The rings a journal keeps, and how many records each keeps at most.
RINGS = {"invalidations": 500, "slow": 100}


class Journal(abc.ABC):
    """Rings of records and counters; methods raise ``StoreUnavailable`` when the store cannot
    answer."""

    @abc.abstractmethod
    def push(self, ring: str, records: Sequence[str], keep: int) -> None:
        """Add ``records`` (oldest first) to ``ring``, keeping its newest ``keep`` only."""

    @abc.abstractmethod
    def read(self, ring: str, limit: int) -> list[str]:
        """The newest ``limit`` records of ``ring``, newest first."""

    @abc.abstractmethod
    def add(self, counts: Mapping[str, float]) -> None:
        """Add each value of ``counts`` to the counter of its name (created at 0)."""

    @abc.abstractmethod
    def counts(self) -> dict[str, float]:
        """Every counter, by name."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Empty every ring and counter."""


class LocalJournal(Journal):
    """A journal in this process's memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rings: dict[str, deque[str]] = {}
        self._counts: dict[str, float] = {}

    def push(self, ring: str, records: Sequence[str], keep: int) -> None:
        with self._lock:
            kept = self._rings.get(ring)
            if kept is None or kept.maxlen != keep:
                kept = self._rings[ring] = deque(kept or (), maxlen=keep)
            kept.extend(records)

    def read(self, ring: str, limit: int) -> list[str]:
        with self._lock:
            kept = list(self._rings.get(ring, ()))
        return kept[::-1][:limit]

    def add(self, counts: Mapping[str, float]) -> None:
        with self._lock:
            for name, value in counts.items():
                self._counts[name] = self._counts.get(name, 0.0) + value

    def counts(self) -> dict[str, float]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._rings.clear()
            self._counts.clear()
