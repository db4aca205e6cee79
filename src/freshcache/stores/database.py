"""The database store: the project's own database, shared by every process, no extra server.

``database://`` uses the ``default`` alias, ``database://?alias=cache`` another one. The tables
come from freshcache's migration. Supported on PostgreSQL (the global sequence is a native
sequence: no lock, no contention) and SQLite (a counter row: writers serialize, which SQLite
does anyway).

When the data written lives in the same database, a bump is made twice: inside the writing
transaction (atomic with the data: a crash between COMMIT and the post-commit bump cannot lose
the invalidation) and again after commit. The second bump is what keeps the stale-set guard
sound: a version taken inside a transaction is handed out *before* that transaction commits, so a
reader could snapshot past it and still read the old rows.

Inside an open transaction every statement of the store runs in a savepoint, so a failure in the
cache never aborts the caller's transaction.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from django.db import DatabaseError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from .base import Hit, Snapshot, Store, StoreUnavailable

__all__ = ["DatabaseStore"]

T = TypeVar("T")

#: The database store has no epochs: its sequence is never reset (not even by ``flush``).
EPOCH = "db"
_CHUNK = 500
#: A stored version is ``seq << SHIFT | nonce``: bumps have nonce 0; a tag seen for the first
#: time gets the current position and a random nonce, so it never looks like a bump to anyone.
SHIFT = 20


class DatabaseStore(Store):
    """``database://`` or ``database://?alias=NAME``."""

    thread_sensitive = True

    def __init__(self, name: str, url: str) -> None:
        super().__init__(name, url)
        query = parse_qs(urlsplit(url).query)
        self.alias = query.get("alias", ["default"])[0]

    @property
    def connection(self) -> BaseDatabaseWrapper:
        return connections[self.alias]

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        conn = self.connection
        try:
            if conn.in_atomic_block:
                with transaction.atomic(using=self.alias), conn.cursor() as cursor:
                    yield cursor
            else:
                with conn.cursor() as cursor:
                    yield cursor
        except DatabaseError as exc:
            raise StoreUnavailable(f"{self!r}: {exc}") from exc

    def _run(self, fn: Callable[[Any], T]) -> T:
        with self._cursor() as cursor:
            return fn(cursor)

    # -- the sequence ------------------------------------------------------------------------

    def _current(self, cursor: Any) -> int:
        if self.connection.vendor == "postgresql":
            cursor.execute(
                "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM freshcache_seq"
            )
        else:
            cursor.execute("SELECT value FROM freshcache_sequence WHERE name = 'global'")
        row = cursor.fetchone()
        return int(row[0]) if row else 0

    def _next(self, cursor: Any) -> int:
        if self.connection.vendor == "postgresql":
            cursor.execute("SELECT nextval('freshcache_seq')")
        else:
            cursor.execute("UPDATE freshcache_sequence SET value = value + 1 WHERE name = 'global'")
            cursor.execute("SELECT value FROM freshcache_sequence WHERE name = 'global'")
        return int(cursor.fetchone()[0])

    def _versions(self, cursor: Any, tags: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for start in range(0, len(tags), _CHUNK):
            chunk = tags[start : start + _CHUNK]
            marks = ", ".join(["%s"] * len(chunk))
            cursor.execute(f"SELECT tag, version FROM freshcache_tag WHERE tag IN ({marks})", chunk)
            found.update((tag, int(version)) for tag, version in cursor.fetchall())
        return found

    def _upsert_tags(self, cursor: Any, tags: list[str], version: int, *, replace: bool) -> None:
        conflict = "DO UPDATE SET version = excluded.version" if replace else "DO NOTHING"
        for start in range(0, len(tags), _CHUNK):
            chunk = tags[start : start + _CHUNK]
            values = ", ".join(["(%s, %s)"] * len(chunk))
            params: list[Any] = []
            for tag in chunk:
                params += [tag, version]
            cursor.execute(
                f"INSERT INTO freshcache_tag (tag, version) VALUES {values} "
                f"ON CONFLICT (tag) {conflict}",
                params,
            )

    # -- the contract ------------------------------------------------------------------------

    def begin(self) -> Snapshot:
        return Snapshot(EPOCH, self._run(self._current))

    def lookup(self, key: str) -> Hit | Snapshot:
        if self.connection.vendor == "postgresql":
            return self._run(lambda cursor: self._lookup_postgresql(cursor, key))

        def run(cursor: Any) -> Hit | Snapshot:
            seq = self._current(cursor)
            cursor.execute(
                "SELECT payload, versions, expires FROM freshcache_entry WHERE key = %s", [key]
            )
            row = cursor.fetchone()
            if row is not None:
                payload, text, expires = row
                recorded = _parse(text)
                if expires is None or expires > time.time():
                    current = self._versions(cursor, list(recorded))
                    if current == recorded:
                        return Hit(bytes(payload), frozenset(recorded))
            return Snapshot(EPOCH, seq)

        return self._run(run)

    def _lookup_postgresql(self, cursor: Any, key: str) -> Hit | Snapshot:
        # One round trip for a hit and for a miss: the sequence position, the entry, and how many
        # of its recorded tag versions no longer match (tags never contain tabs or newlines).
        cursor.execute(_PG_LOOKUP, [key])
        seq, payload, text, expires, changed = cursor.fetchone()
        if payload is not None and changed == 0 and (expires is None or expires > time.time()):
            return Hit(bytes(payload), frozenset(_parse(text)))
        return Snapshot(EPOCH, int(seq))

    def set(
        self,
        key: str,
        payload: bytes,
        tags: Collection[str],
        snapshot: Snapshot,
        timeout: float | None = None,
    ) -> bool:
        if snapshot.epoch != EPOCH:
            return False
        wanted = sorted(set(tags))

        def run(cursor: Any) -> bool:
            versions = self._versions(cursor, wanted)
            if any(v >> SHIFT > snapshot.seq for v in versions.values()):
                return False
            missing = [t for t in wanted if t not in versions]
            if missing:
                # First sighting (or deleted): a version at the current position. Storing now
                # is safe only if nothing was bumped since the snapshot, because the missing
                # version may have been such a bump.
                current = self._current(cursor)
                fresh = current << SHIFT | (secrets.randbelow((1 << SHIFT) - 1) + 1)
                self._upsert_tags(cursor, missing, fresh, replace=False)
                if current != snapshot.seq:
                    return False
                versions.update(self._versions(cursor, missing))
                if any(versions.get(t, fresh) >> SHIFT > snapshot.seq for t in missing):
                    return False
            text = "\n".join(f"{t}\t{versions[t]}" for t in wanted)
            expires = None if timeout is None else time.time() + timeout
            cursor.execute(
                "INSERT INTO freshcache_entry (key, payload, versions, expires) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (key) DO UPDATE SET "
                "payload = excluded.payload, versions = excluded.versions, "
                "expires = excluded.expires",
                [key, payload, text, expires],
            )
            return True

        return self._run(run)

    def bump(self, tags: Collection[str], marks: Collection[int] = ()) -> None:
        if not tags and not marks:
            return
        # Sorted, so that two transactions bumping overlapping tags lock rows in one order.
        ordered = sorted(set(tags) | {_mark(m) for m in marks})

        def run(cursor: Any) -> None:
            if marks and len(self._versions(cursor, [_mark(m) for m in marks])) == len(set(marks)):
                return  # a relay applied these log rows after they committed
            version = self._next(cursor) << SHIFT if tags else 0  # marks only: no step
            self._upsert_tags(cursor, ordered, version, replace=True)

        self._run(run)

    def apply(self, batch: Sequence[tuple[int, Collection[str]]]) -> int:
        if not batch:
            return 0

        def run(cursor: Any) -> int:
            done = set(self._versions(cursor, [_mark(m) for m, _ in batch]))
            todo = [(m, tags) for m, tags in batch if _mark(m) not in done]
            if not todo:
                return 0
            # One sequence step and one sorted upsert for the whole batch: transactions that
            # lock tag rows always do it in one order, so they cannot deadlock.
            names: set[str] = set()
            for mark, tags in todo:
                names.update(tags)
                names.add(_mark(mark))
            self._upsert_tags(cursor, sorted(names), self._next(cursor) << SHIFT, replace=True)
            return len(todo)

        # One transaction: a row's mark is recorded with its bump or not at all.
        try:
            with transaction.atomic(using=self.alias):
                return self._run(run)
        except DatabaseError as exc:
            raise StoreUnavailable(f"{self!r}: {exc}") from exc

    def forget(self, marks: Collection[int]) -> None:
        names = [_mark(m) for m in marks]
        if not names:
            return

        def run(cursor: Any) -> None:
            for start in range(0, len(names), _CHUNK):
                chunk = names[start : start + _CHUNK]
                marks_sql = ", ".join(["%s"] * len(chunk))
                cursor.execute(f"DELETE FROM freshcache_tag WHERE tag IN ({marks_sql})", chunk)

        self._run(run)

    def bumps_in_transaction(self, using: str) -> bool:
        return using == self.alias

    def clear(self) -> None:
        def run(cursor: Any) -> None:
            cursor.execute("DELETE FROM freshcache_entry")

        self._run(run)

    def purge_expired(self) -> int:
        """Delete expired and invalid-looking rows; return how many entries were deleted."""

        def run(cursor: Any) -> int:
            cursor.execute("DELETE FROM freshcache_entry WHERE expires < %s", [time.time()])
            return int(cursor.rowcount)

        return self._run(run)


_PG_LOOKUP = """
SELECT
  (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM freshcache_seq),
  e.payload,
  e.versions,
  e.expires,
  (SELECT count(*)
     FROM regexp_split_to_table(e.versions, E'\\n') AS line
     LEFT JOIN freshcache_tag t ON t.tag = split_part(line, E'\\t', 1)
    WHERE line <> ''
      AND (t.version IS NULL OR t.version::text <> split_part(line, E'\\t', 2)))
FROM (SELECT 1) AS one
LEFT JOIN freshcache_entry e ON e.key = %s
"""


def _mark(log_id: int) -> str:
    # A space never occurs in a tag (tags.py digests such names), so marks cannot collide.
    return f"log mark:{int(log_id)}"


def _parse(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.split("\n"):
        if line:
            tag, _, version = line.rpartition("\t")
            out[tag] = int(version)
    return out
