"""Reads of a read replica that may not have replayed the writes a computation must see.

With ``READ_REPLICAS = {"replica": "default"}``, reads through ``replica`` are tagged as reads of
``default`` (``tags.alias_prefix``), so a write on ``default`` invalidates what was built from
them. That is not enough: streaming replication is asynchronous, and a computation that misses
right after a write may read the replica *before* it replays that write, then be stored under
the versions the write's bump produced: stale until the next write.

So, at a computation's first read of each replica (the innermost scope with a snapshot: the
computation that would be stored), before the read runs:

1. the primary's current WAL insert position is read (``pg_current_wal_insert_lsn()``: not
   ``pg_current_wal_lsn()``, which under ``synchronous_commit = off`` can be before a commit
   that has returned). The computation's snapshot was taken before this, and every write whose
   bump the snapshot saw committed before its bump: its commit record is before that position;
2. the replica's replay position (``pg_last_wal_replay_lsn()``) is read until it reaches that
   position, for at most ``REPLICA_WAIT_SECONDS``. A query that starts after the replica
   replayed a commit sees it (PostgreSQL hot standby). Replay only moves forward, so every
   later read of this computation on the replica sees those writes too;
3. if it does not catch up in time (or the positions cannot be read: another database engine,
   a primary that is itself in recovery, an error), the computation is served but not stored,
   with the reason.

A nested computation (a fragment inside a page) has its own snapshot and checks again; its
refusal makes its enclosing computation not stored either (``Scope.refuse`` bubbles up).

**Data read from a replica is stamped as old as the last check that passed** (read generations,
``watermark.py``): an instance a view loaded from the replica outside any cached computation,
or inside one, then handed to a fragment or an ``@cached`` call, is bounded by a snapshot taken
before that check (:func:`confirmed`), never by a later one that the replica may not have
replayed yet. Before any check passed in this process, such data is not storable at all.

A server whose replay position is NULL is not a streaming standby (a logical replication
subscriber, a promoted standby's successor): it is never taken as caught up. The check's own
queries run in a savepoint when the connection is in a transaction, so a failure of theirs
never aborts the caller's transaction.

Cost: two small queries per miss that reads a replica (none on a hit, none without replicas).
"""

from __future__ import annotations

import time
from typing import Any

from django.db import connections, transaction

from ..conf import get_settings
from ..scope import current_scope
from ..transactions import in_transaction

__all__ = ["before_read", "confirmed"]

#: Seconds between two reads of the replica's replay position while waiting for it.
POLL_SECONDS = 0.002

#: A read of a replica outside any check checks it again (without waiting) when the last
#: check is older than this and the store handed this process a newer snapshot since.
REFRESH_SECONDS = 0.05

#: Per replica alias: the read generation just before the latest check that passed.
_confirmed: dict[str, int] = {}
_checked_at: dict[str, float] = {}


def confirmed(alias: str) -> int:
    """The read generation to stamp data read from replica ``alias`` with: the one just before
    the latest check that found it caught up (0 before any: nothing read is storable)."""
    return _confirmed.get(alias, 0)


def read_generation(alias: str) -> int:
    """The read generation to stamp rows about to be read from replica ``alias`` with
    (``capture/patch.py``): :func:`confirmed`, after checking the replica again, without
    waiting, at most every :data:`REFRESH_SECONDS` and only when it could vouch for more."""
    from .. import watermark

    now = time.monotonic()
    current = watermark.generation()
    if current > _confirmed.get(alias, 0) and now - _checked_at.get(alias, -1e9) >= REFRESH_SECONDS:
        _checked_at[alias] = now
        primary = get_settings().read_replicas.get(alias)
        if primary is not None:
            _behind(connections[alias], alias, primary, 0.0)
    return min(current, _confirmed.get(alias, 0))


def before_read(connection: Any) -> None:
    """Called by the execute wrapper before a statement runs on a ``READ_REPLICAS`` alias."""
    scope = current_scope()
    while scope is not None and scope.snapshot is None:
        scope = scope.parent
    if scope is None:
        return  # nothing read here can be stored
    alias = connection.alias
    if scope.replicas is None:
        scope.replicas = {}
    if alias not in scope.replicas:
        settings = get_settings()
        scope.replicas[alias] = _behind(
            connection, alias, settings.read_replicas[alias], settings.replica_wait_seconds
        )
    reason = scope.replicas[alias]
    current = current_scope()
    if reason is not None and current is not None:
        current.refuse(reason)
        scope.refuse(reason)


def _lsn(connection: Any, sql: str) -> int | None:
    """A WAL position (``X/Y`` hexadecimal) read with ``sql`` as a number; ``None`` if NULL.
    In a savepoint when the connection is in a transaction (a failure aborts only it)."""
    if in_transaction(connection):
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute(sql)
            (value,) = cursor.fetchone()
    else:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            (value,) = cursor.fetchone()
    if value is None:
        return None
    high, _, low = str(value).partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def _behind(replica: Any, alias: str, primary_alias: str, wait: float) -> str | None:
    """``None`` once ``replica`` replayed the primary's current WAL position, else why not."""
    from .patch import internal

    primary = connections[primary_alias]
    if replica.vendor != "postgresql" or primary.vendor != "postgresql":
        return f"read replica {alias!r}: its replay position cannot be read on {replica.vendor}"
    from .. import watermark

    before = watermark.generation()
    try:
        with internal():
            target = _lsn(primary, "SELECT pg_current_wal_insert_lsn()")
            if target is None:
                return f"read replica {alias!r}: {primary_alias!r} gave no WAL position"
            deadline = time.monotonic() + wait
            while True:
                replayed = _lsn(replica, "SELECT pg_last_wal_replay_lsn()")
                if replayed is None:
                    return f"read replica {alias!r} is not a streaming standby (not in recovery)"
                if replayed >= target:
                    if before > _confirmed.get(alias, 0):
                        _confirmed[alias] = before
                    return None
                if time.monotonic() >= deadline:
                    return (
                        f"read replica {alias!r} was {target - replayed} bytes of WAL behind "
                        f"{primary_alias!r} for {wait:g} s"
                    )
                time.sleep(POLL_SECONDS)
    except Exception as exc:
        return f"read replica {alias!r}: could not compare it with {primary_alias!r}: {exc}"

