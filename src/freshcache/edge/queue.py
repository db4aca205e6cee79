"""The purge queue: edge keys to purge, durable in the log database (``freshcache_purge``).

The protocol, and why no purge is lost:

1. **Enqueue with the log's deletion.** The relay (``log/relay.py``) deletes applied log rows in
   a transaction; in that same transaction :func:`enqueue` upserts one row per (purger, key) for
   every key of ``purge_keys(tag)`` of every tag of the rows it deleted. Every log row passes
   through a relay, including the rows whose writer bumped the stores itself (marked rows: the
   relay skips their bump, not their deletion), so every write reaches the queue. Either both
   commit or neither does: a relay that dies leaves the log rows, and another relay enqueues.
2. **One row per key, versioned.** A key already queued is not added twice: its ``version`` is
   set to the enqueuing batch's last log id. A hot key (``~all``) is therefore one row per
   purger, however many writes wait.
3. **Claim, send, delete if unchanged.** A worker (``worker.py``) claims due rows for
   ``claim_seconds`` (``SKIP LOCKED``: workers never wait for one another), sends them, and on
   success deletes each row only if its version is still the one it sent. A row enqueued again
   while its purge was in flight is released and sent again: that purge may have reached the
   edge before the newer write committed. On failure the rows get ``next_try`` (backoff, or the
   edge's ``Retry-After``) and the error. A worker killed mid-batch leaves its rows claimed;
   once the claim expires another worker sends them (at least once).

In normal operation (no crash, no failure) each queued version of a key is sent exactly once.
Times are ``time.time()`` of the writing process (hosts' clocks only move retries and claims).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.db import connections, transaction

from .keys import purge_keys

__all__ = ["Claimed", "claim", "done", "enqueue", "failed", "status"]

#: Rows per INSERT statement.
_CHUNK = 500
#: PostgreSQL channel a worker listens on (``NOTIFY`` is delivered at commit).
CHANNEL = "freshcache_purge"


def _internal(fn: Callable[[], Any]) -> Any:
    from ..capture.patch import _internal as run

    return run(fn)


def _execute(conn: Any, sql: str, params: Iterable[Any] = ()) -> Any:
    cursor = conn.cursor()
    _internal(lambda: cursor.execute(sql, list(params)))
    return cursor


def enqueue(conn: Any, tags_by_row: Iterable[tuple[int, Iterable[str]]]) -> int:
    """Queue the purge keys of ``tags_by_row`` (log id, tags) for every configured purger, in
    ``conn``'s current transaction; return the rows written. Raises ``DatabaseError`` (the
    caller's transaction, and with it the deletion of the log rows, then rolls back)."""
    from ..conf import get_settings

    purgers = get_settings().edge.purgers
    if not purgers:
        return 0
    keys: set[str] = set()
    version = 0
    for ident, tags in tags_by_row:
        version = max(version, ident)
        for tag in tags:
            keys |= purge_keys(tag)
    if not keys:
        return 0
    now = time.time()
    rows = [(p.name, key) for p in purgers for key in sorted(keys)]
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        values = ", ".join(["(%s, %s, %s, %s, 0, 0, '', 0)"] * len(chunk))
        params: list[Any] = []
        for name, key in chunk:
            params += [name, key, version, now]
        _execute(
            conn,
            "INSERT INTO freshcache_purge "
            "(purger, key, version, created, next_try, attempts, last_error, phase) "
            f"VALUES {values} ON CONFLICT (purger, key) DO UPDATE SET "
            # A key waiting for its settle purge is due again now, as a new purge.
            "version = excluded.version, next_try = CASE WHEN freshcache_purge.phase = 1 "
            "THEN excluded.next_try ELSE freshcache_purge.next_try END, created = CASE WHEN "
            "freshcache_purge.phase = 1 THEN excluded.created ELSE freshcache_purge.created END, "
            "phase = 0",
            params,
        ).close()
    if conn.vendor == "postgresql":
        _execute(conn, f"NOTIFY {CHANNEL}").close()
    from .worker import get_worker

    alias = conn.alias
    transaction.on_commit(lambda: get_worker().wake(alias), using=alias)
    return len(rows)


@dataclass(frozen=True)
class Claimed:
    """A queued key a worker is sending."""

    id: int
    key: str
    version: int
    attempts: int
    #: 1: the settle purge (the key was purged once already).
    phase: int = 0


def claim(using: str, purger: str, limit: int, seconds: float) -> list[Claimed]:
    """Claim up to ``limit`` due keys of ``purger`` for ``seconds``, oldest first."""
    conn = connections[using]
    now = time.time()
    lock = " FOR UPDATE SKIP LOCKED" if conn.vendor == "postgresql" else ""
    with transaction.atomic(using=using):
        cursor = _execute(
            conn,
            "UPDATE freshcache_purge SET claimed_until = %s WHERE id IN ("
            "SELECT id FROM freshcache_purge WHERE purger = %s AND next_try <= %s "
            "AND (claimed_until IS NULL OR claimed_until < %s) ORDER BY id LIMIT %s"
            f"{lock}) RETURNING id, key, version, attempts, phase",
            [now + seconds, purger, now, now, limit],
        )
        found = [Claimed(int(i), str(k), int(v), int(a), int(p))
                 for i, k, v, a, p in cursor.fetchall()]  # fmt: skip
        cursor.close()
    found.sort(key=lambda c: c.id)
    return found


def done(using: str, sent: list[Claimed], settle: float | None = None) -> int:
    """The edge purged ``sent``. A key not enqueued again since is deleted, or, with ``settle``
    and on its first purge, kept to be purged once more ``settle`` seconds later (a response
    that was on its way to the edge during this purge is removed by that one). A key enqueued
    again is released (sent again soon). Return how many keys are done with."""
    if not sent:
        return 0
    conn = connections[using]
    ids = [c.id for c in sent]
    marks = ", ".join(["%s"] * len(ids))
    again = [c for c in sent if settle is not None and c.phase == 0]
    last = [c for c in sent if settle is None or c.phase != 0]
    finished = 0
    with transaction.atomic(using=using):
        if again:
            pairs = ", ".join(["(%s, %s)"] * len(again))
            cursor = _execute(
                conn,
                "UPDATE freshcache_purge SET phase = 1, next_try = %s, claimed_until = NULL, "
                f"attempts = 0, last_error = '' WHERE (id, version) IN (VALUES {pairs})",
                [time.time() + (settle or 0.0), *[v for c in again for v in (c.id, c.version)]],
            )
            finished += max(0, int(cursor.rowcount))
            cursor.close()
        if last:
            pairs = ", ".join(["(%s, %s)"] * len(last))
            cursor = _execute(
                conn,
                f"DELETE FROM freshcache_purge WHERE (id, version) IN (VALUES {pairs})",
                [v for c in last for v in (c.id, c.version)],
            )
            finished += max(0, int(cursor.rowcount))
            cursor.close()
        if finished < len(sent):
            _execute(
                conn,
                "UPDATE freshcache_purge SET claimed_until = NULL, attempts = 0, "
                f"last_error = '' WHERE id IN ({marks}) AND phase = 0 "
                "AND claimed_until IS NOT NULL",
                ids,
            ).close()
    return finished


def failed(using: str, sent: list[Claimed], error: str, delay: float) -> None:
    """The edge did not purge ``sent``: try again in ``delay`` seconds, remember ``error``."""
    if not sent:
        return
    conn = connections[using]
    ids = [c.id for c in sent]
    marks = ", ".join(["%s"] * len(ids))
    with transaction.atomic(using=using):
        _execute(
            conn,
            "UPDATE freshcache_purge SET claimed_until = NULL, attempts = attempts + 1, "
            f"next_try = %s, last_error = %s WHERE id IN ({marks})",
            [time.time() + delay, error[:1000], *ids],
        ).close()


def release(using: str, sent: list[Claimed], delay: float) -> None:
    """Put ``sent`` back unsent (the rate limit), due in ``delay`` seconds."""
    if not sent:
        return
    ids = [c.id for c in sent]
    marks = ", ".join(["%s"] * len(ids))
    with transaction.atomic(using=using):
        _execute(
            connections[using],
            "UPDATE freshcache_purge SET claimed_until = NULL, next_try = %s "
            f"WHERE id IN ({marks})",
            [time.time() + delay, *ids],
        ).close()


def next_due(using: str) -> float | None:
    """Seconds until the next unclaimed key is due (0.0: now), ``None`` when none waits."""
    now = time.time()
    cursor = _execute(
        connections[using],
        "SELECT min(CASE WHEN claimed_until IS NOT NULL AND claimed_until > next_try "
        "THEN claimed_until ELSE next_try END) FROM freshcache_purge",
    )
    (when,) = cursor.fetchone()
    cursor.close()
    return None if when is None else max(0.0, float(when) - now)


def status(using: str) -> list[dict[str, Any]]:
    """Per purger (the configured ones first, then names only the queue still holds): keys
    pending, keys purged once that wait for their settle purge, the oldest pending one's age
    (seconds), keys claimed by a worker right now, the most failed attempts, the last error and
    the seconds until the next retry (``None``: none waits for one)."""
    from ..conf import get_settings

    now = time.time()
    cursor = _execute(
        connections[using],
        "SELECT purger, sum(1 - phase), min(CASE WHEN phase = 0 THEN created END), "
        "sum(CASE WHEN claimed_until > %s THEN 1 ELSE 0 END), max(attempts), "
        "min(CASE WHEN next_try > %s AND phase = 0 THEN next_try END), sum(phase) "
        "FROM freshcache_purge GROUP BY purger",
        [now, now],
    )
    found = {row[0]: row for row in cursor.fetchall()}
    errors = _execute(
        connections[using],
        "SELECT purger, last_error FROM freshcache_purge WHERE last_error <> '' "
        "ORDER BY next_try DESC",
    ).fetchall()
    last_error: dict[str, str] = {}
    for name, error in errors:
        last_error.setdefault(name, error)
    configured = [p.name for p in get_settings().edge.purgers]
    report = []
    for name in [*configured, *sorted(set(found) - set(configured))]:
        _, count, oldest, claimed, attempts, retry, settling = found.get(
            name, (name, 0, None, 0, 0, None, 0)
        )
        report.append({
            "purger": name,
            "configured": name in configured,
            "pending": int(count or 0),
            "settling": int(settling or 0),
            "oldest_seconds": None if oldest is None else round(max(0.0, now - oldest), 3),
            "sending": int(claimed or 0),
            "attempts": int(attempts or 0),
            "last_error": last_error.get(name),
            "next_retry_seconds": None if retry is None else round(retry - now, 3),
        })  # fmt: skip
    return report
