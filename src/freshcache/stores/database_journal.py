"""The journal (``journal.py``) of the ``database://`` store: rows of ``freshcache_journal``
(one per record, the ring's oldest deleted past its bound) and ``freshcache_counter`` (one per
counter, added to by an upsert; PostgreSQL and SQLite). ``freshcache.journal`` writes it from
its flusher thread, on that thread's own connection, never inside a request's transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .journal import RINGS, Journal

if TYPE_CHECKING:
    from .database import DatabaseStore

__all__ = ["DatabaseJournal"]


class DatabaseJournal(Journal):
    def __init__(self, store: DatabaseStore) -> None:
        self._store = store

    def push(self, ring: str, records: Sequence[str], keep: int) -> None:
        if not records:
            return

        def run(cursor: Any) -> None:
            cursor.executemany(
                "INSERT INTO freshcache_journal (ring, record) VALUES (%s, %s)",
                [(ring, record) for record in records],
            )
            cursor.execute(
                "DELETE FROM freshcache_journal WHERE ring = %s AND id <= (SELECT id FROM "
                "freshcache_journal WHERE ring = %s ORDER BY id DESC LIMIT 1 OFFSET %s)",
                [ring, ring, keep],
            )

        self._store._run(run)

    def read(self, ring: str, limit: int) -> list[str]:
        def run(cursor: Any) -> list[str]:
            cursor.execute(
                "SELECT record FROM freshcache_journal WHERE ring = %s ORDER BY id DESC LIMIT %s",
                [ring, max(0, limit)],
            )
            return [str(row[0]) for row in cursor.fetchall()]

        return self._store._run(run)

    def add(self, counts: Mapping[str, float]) -> None:
        if not counts:
            return

        def run(cursor: Any) -> None:
            cursor.executemany(
                "INSERT INTO freshcache_counter (name, value) VALUES (%s, %s) ON CONFLICT (name) "
                "DO UPDATE SET value = freshcache_counter.value + excluded.value",
                sorted(counts.items()),
            )

        self._store._run(run)

    def counts(self) -> dict[str, float]:
        def run(cursor: Any) -> dict[str, float]:
            cursor.execute("SELECT name, value FROM freshcache_counter")
            return {str(name): float(value) for name, value in cursor.fetchall()}

        return self._store._run(run)

    def reset(self) -> None:
        def run(cursor: Any) -> None:
            cursor.execute("DELETE FROM freshcache_counter")
            marks = ", ".join(["%s"] * len(RINGS))
            cursor.execute(f"DELETE FROM freshcache_journal WHERE ring IN ({marks})", list(RINGS))

        self._store._run(run)
