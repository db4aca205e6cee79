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

Leases (single flight) are rows of ``freshcache_lease``, never taken inside an open transaction
(``database_lease.py``). The sequence, and how a broken SQLite one restarts, are in
``database_sequence.py``.

Garbage: a row or value the store did not write (an entry's versions text emptied, truncated or
not parsing, a payload or expiry of the wrong type, a tag version of zero or below or ahead of the
sequence, a mark row holding anything but a bump's version, a SQLite sequence row that is missing
or not an integer) is never trusted and never an exception: an entry misses, a tag version counts
as lost (the first-sighting rule applies, and the row is replaced), a mark is no mark (its log
row is bumped again), and a broken SQLite sequence restarts above every tag version with every
entry deleted, logged once at WARNING. A lease row whose expiry is missing, not a number or
further ahead than any lease lasts (``conf.MAX_LEASE_SECONDS``) counts as expired. A
well-formed value written from outside (a plausible version number) cannot be told from a
real one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from django.db import Error as DjangoDBError
from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from ..transactions import in_transaction
from . import database_lease as leases
from . import database_rows as rows
from . import database_sequence as sequence
from .base import Hit, Snapshot, Store, Stored, StoreUnavailable
from .database_rows import HEADER, SHIFT
from .journal import Journal

__all__ = ["DatabaseStore"]

T = TypeVar("T")

#: The database store has no epochs: its sequence is never reset (not even by ``flush``).
EPOCH = "db"
_CHUNK = 500
#: Expired entries are ignored by lookups and deleted by stores: at most every this many
#: seconds per process, a ``set`` outside a transaction deletes up to :data:`PURGE_BATCH` of them.
PURGE_SECONDS = 60.0
PURGE_BATCH = 1000


class DatabaseStore(Store):
    """``database://`` or ``database://?alias=NAME``."""

    thread_sensitive = True

    def __init__(self, name: str, url: str) -> None:
        super().__init__(name, url)
        query = parse_qs(urlsplit(url).query)
        self.alias = query.get("alias", ["default"])[0]
        self._next_purge = 0.0

    @property
    def connection(self) -> BaseDatabaseWrapper:
        return connections[self.alias]

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        conn = self.connection
        try:
            if in_transaction(conn):
                with transaction.atomic(using=self.alias), conn.cursor() as cursor:
                    yield cursor
            else:
                with conn.cursor() as cursor:
                    yield cursor
        except DjangoDBError as exc:  # InterfaceError (a closed connection) too
            raise StoreUnavailable(f"{self!r}: {exc}") from exc

    def _run(self, fn: Callable[[Any], T]) -> T:
        with self._cursor() as cursor:
            return fn(cursor)

    # -- the sequence and the tag rows -------------------------------------------------------

    def _current(self, cursor: Any) -> int:
        return sequence.current(self, cursor)

    def _next(self, cursor: Any) -> int:
        return sequence.step(self, cursor)

    def _rows(self, cursor: Any, tags: list[str]) -> dict[str, Any]:
        """The stored version of each tag that has a row, as stored (possibly garbage)."""
        found: dict[str, Any] = {}
        for start in range(0, len(tags), _CHUNK):
            chunk = tags[start : start + _CHUNK]
            marks = ", ".join(["%s"] * len(chunk))
            cursor.execute(f"SELECT tag, version FROM freshcache_tag WHERE tag IN ({marks})", chunk)
            found.update(cursor.fetchall())
        return found

    def _versions(self, cursor: Any, tags: list[str]) -> dict[str, int]:
        """The version of each tag that has a usable one (a garbage version counts as none)."""
        found = ((tag, rows.version(value)) for tag, value in self._rows(cursor, tags).items())
        return {tag: version for tag, version in found if version is not None}

    def _marked(self, cursor: Any, marks: Collection[int]) -> set[int]:
        """The marks recorded: rows holding a bump's version, no newer than the sequence."""
        found = self._versions(cursor, [_mark(m) for m in marks])
        bumps = {name: v for name, v in found.items() if v & rows.NONCE == 0}
        if not bumps:
            return set()
        current = self._current(cursor)
        return {m for m in marks if _mark(m) in bumps and bumps[_mark(m)] >> SHIFT <= current}

    def _claim(self, cursor: Any, marks: Collection[int]) -> None:
        """Lock the mark rows of ``marks`` (creating absent ones) until the transaction ends.

        A relay's ``apply`` and the writer's own ``bump`` may check one mark at the same time:
        holding its row makes the second wait for the first to commit, then see its mark. Marks
        are locked first, in sorted order, and tags after them in sorted order, so two
        transactions never wait on each other. A created row holds a first sighting's version,
        never a bump's, so it counts as no mark until the bump overwrites it.
        """
        names = sorted({_mark(m) for m in marks})
        self._upsert_tags(cursor, names, rows.first_sighting(0), replace=False)
        if self.connection.vendor == "postgresql":
            for start in range(0, len(names), _CHUNK):
                chunk = names[start : start + _CHUNK]
                params = ", ".join(["%s"] * len(chunk))
                cursor.execute(
                    f"SELECT tag FROM freshcache_tag WHERE tag IN ({params}) "
                    "ORDER BY tag FOR UPDATE",
                    chunk,
                )
        # SQLite: the INSERT above took the database's write lock for the transaction.

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

    def _replace_garbage(self, cursor: Any, found: dict[str, Any], version: int) -> None:
        """Give tags whose row holds garbage ``version``, unless a bump replaced it meanwhile."""
        for tag, old in sorted(found.items()):
            cursor.execute(
                "UPDATE freshcache_tag SET version = %s WHERE tag = %s AND version = %s",
                [version, tag, old],
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
                payload, recorded = rows.payload(row[0]), rows.parse(row[1])
                if (
                    payload is not None
                    and recorded is not None
                    and rows.alive(row[2])
                    and self._versions(cursor, list(recorded)) == recorded
                ):
                    return Hit(payload, frozenset(recorded))
            return Snapshot(EPOCH, seq)

        return self._run(run)

    def _lookup_postgresql(self, cursor: Any, key: str) -> Hit | Snapshot:
        # One round trip for a hit and for a miss: the sequence position, the entry, and how many
        # of its recorded tag versions no longer match (tags never contain tabs or newlines).
        # The text is then checked here: a header and line count that do not match, or a line
        # that does not parse, make a miss whatever the count of changed versions says.
        cursor.execute(_PG_LOOKUP, [key])
        seq, payload, text, expires, changed = cursor.fetchone()
        if payload is not None and changed == 0 and rows.alive(expires):
            recorded = rows.parse(text)
            data = rows.payload(payload)
            if recorded is not None and data is not None:
                return Hit(data, frozenset(recorded))
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
            found = self._rows(cursor, wanted)
            versions: dict[str, int] = {}
            garbage: dict[str, Any] = {}
            for tag, value in found.items():
                version = rows.version(value)
                if version is None:
                    garbage[tag] = value
                else:
                    versions[tag] = version
            if any(v >> SHIFT > snapshot.seq for v in versions.values()):
                # Bumped since the snapshot. A version ahead of the sequence itself was never
                # handed out (it was written from outside): replace it, or no entry depending
                # on that tag could be stored again until the tag is bumped.
                current = self._current(cursor)
                ahead = {t: found[t] for t, v in versions.items() if v >> SHIFT > current}
                self._replace_garbage(cursor, ahead, rows.first_sighting(current))
                return False
            missing = [t for t in wanted if t not in versions]
            if missing:
                # First sighting (or deleted, or garbage): a version at the current position.
                # Storing now is safe only if nothing was bumped since the snapshot, because the
                # missing version may have been such a bump.
                current = self._current(cursor)
                fresh = rows.first_sighting(current)
                absent = [t for t in missing if t not in garbage]
                self._upsert_tags(cursor, absent, fresh, replace=False)
                self._replace_garbage(cursor, garbage, fresh)
                if current != snapshot.seq:
                    return False
                seen = self._versions(cursor, missing)
                if len(seen) != len(missing) or any(
                    v >> SHIFT > snapshot.seq for v in seen.values()
                ):
                    return False
                versions.update(seen)
            # "fc1 N\n" then one line per tag, without a final newline ("fc1 0\n": no tags).
            lines = (f"{t}\t{versions[t]}" for t in wanted)
            text = f"{HEADER} {len(wanted)}\n" + "\n".join(lines)
            expires = None if timeout is None else time.time() + timeout
            cursor.execute(
                "INSERT INTO freshcache_entry (key, payload, versions, expires) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (key) DO UPDATE SET "
                "payload = excluded.payload, versions = excluded.versions, "
                "expires = excluded.expires",
                [key, payload, text, expires],
            )
            return True

        stored = self._run(run)
        now = time.monotonic()
        if now >= self._next_purge and not in_transaction(self.connection):
            # Never inside the caller's transaction: the deleted rows would stay locked by it.
            self._next_purge = now + PURGE_SECONDS
            self._run(self._purge)
        return stored

    def _purge(self, cursor: Any, limit: int | None = PURGE_BATCH) -> int:
        """Delete expired entries (``limit`` at most); return how many were deleted."""
        where = "expires < %s"
        if limit is not None:
            where = f"key IN (SELECT key FROM freshcache_entry WHERE expires < %s LIMIT {limit})"
        cursor.execute(f"DELETE FROM freshcache_entry WHERE {where}", [time.time()])
        return int(cursor.rowcount)

    def bump(self, tags: Collection[str], marks: Collection[int] = ()) -> None:
        if not tags and not marks:
            return
        # Sorted, so that two transactions bumping overlapping tags lock rows in one order.
        ordered = sorted(set(tags) | {_mark(m) for m in marks})

        def run(cursor: Any) -> None:
            if marks:
                self._claim(cursor, marks)
                if len(self._marked(cursor, marks)) == len(set(marks)):
                    return  # a relay applied these log rows after they committed
            # Marks only: no step, and the marks hold the current position (a mark must hold a
            # bump's version to count as one, see _marked).
            version = (self._next(cursor) if tags else self._current(cursor)) << SHIFT
            self._upsert_tags(cursor, ordered, version, replace=True)

        if not marks:
            self._run(run)
            return
        # One transaction: the marks stay locked from their check to their bump.
        try:
            with transaction.atomic(using=self.alias):
                self._run(run)
        except DjangoDBError as exc:  # InterfaceError (a closed connection) too
            raise StoreUnavailable(f"{self!r}: {exc}") from exc

    def apply(
        self, batch: Sequence[tuple[int, Collection[str]]], bumped: list[int] | None = None
    ) -> int:
        if not batch:
            return 0

        def run(cursor: Any) -> list[int]:
            self._claim(cursor, [m for m, _ in batch])
            done = {_mark(m) for m in self._marked(cursor, [m for m, _ in batch])}
            todo = [(m, tags) for m, tags in batch if _mark(m) not in done]
            if not todo:
                return []
            # One sequence step and one sorted upsert for the whole batch: transactions that
            # lock tag rows always do it in one order, so they cannot deadlock.
            names: set[str] = set()
            for mark, tags in todo:
                names.update(tags)
                names.add(_mark(mark))
            self._upsert_tags(cursor, sorted(names), self._next(cursor) << SHIFT, replace=True)
            return [m for m, _ in todo]

        # One transaction: a row's mark is recorded with its bump or not at all.
        try:
            with transaction.atomic(using=self.alias):
                applied = self._run(run)
        except DjangoDBError as exc:  # InterfaceError (a closed connection) too
            raise StoreUnavailable(f"{self!r}: {exc}") from exc
        if bumped is not None:  # committed
            bumped.extend(applied)
        return len(applied)

    def marked(self, marks: Collection[int]) -> frozenset[int]:
        if not marks:
            return frozenset()
        return frozenset(self._run(lambda cursor: self._marked(cursor, list(marks))))

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

    def acquire(self, key: str, ttl: float) -> str | None:
        return leases.acquire(self, key, ttl)

    def release(self, key: str, token: str) -> None:
        leases.release(self, key, token)

    def bumps_in_transaction(self, using: str) -> bool:
        return using == self.alias

    def inspect(self, key: str) -> Stored | None:
        from .database_inspect import inspect

        return inspect(self, key)

    def journal(self) -> Journal:
        from .database_journal import DatabaseJournal

        journal = self.__dict__.get("_journal")
        if journal is None:
            journal = self.__dict__.setdefault("_journal", DatabaseJournal(self))
        return journal

    def clear(self) -> None:
        def run(cursor: Any) -> None:
            cursor.execute("DELETE FROM freshcache_entry")
            cursor.execute("DELETE FROM freshcache_lease")

        self._run(run)

    def purge_expired(self) -> int:
        """Delete every expired entry now; return how many were deleted. (Stores also purge
        as they go: see :data:`PURGE_SECONDS`.)"""
        return self._run(lambda cursor: self._purge(cursor, None))


_PG_LOOKUP = """
SELECT
  (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM freshcache_seq),
  e.payload,
  e.versions,
  e.expires,
  (SELECT count(*)
     FROM regexp_split_to_table(substr(e.versions, strpos(e.versions, E'\\n') + 1), E'\\n')
          AS line
     LEFT JOIN freshcache_tag t ON t.tag = split_part(line, E'\\t', 1)
    WHERE line <> ''
      AND (t.version IS NULL OR t.version::text <> split_part(line, E'\\t', 2)))
FROM (SELECT 1) AS one
LEFT JOIN freshcache_entry e ON e.key = %s
"""


def _mark(log_id: int) -> str:
    # A space never occurs in a tag (tags.py digests such names), so marks cannot collide.
    return f"log mark:{int(log_id)}"
