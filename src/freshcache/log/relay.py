"""The relay: applies the invalidation log to the stores, in every web process.

A daemon thread per process (started on first use of the cache, ``RELAY``) and, for deployments
that want one, ``manage.py freshcache relay`` run the same loop:

1. **Drain**: read the log in id order (batches of :data:`BATCH`), compute each row's tags
   (``log.decode``), apply them to every store (``Store.apply``: a row the writer's own bump
   already marked is skipped, so a normal write costs its entries one miss, not two), then
   delete the rows, in one transaction. Several relays may drain at once: marks make that
   idempotent.
2. **Wait** for ``NOTIFY freshcache`` (sent by the triggers at commit; psycopg 3 ``LISTEN`` on a
   connection of its own), or ``RELAY_POLL_SECONDS``, whichever comes first. Polling is the
   fallback when notifications cannot be had (SQLite, a pooler, a lost connection).

While this process knows of rows it could not apply (a store unreachable; also after a bump of its
own failed) and until its first drain has completed, :meth:`Relay.blocks_reads` is true and the
core serves nothing from the stores: it computes uncached (``reason=invalidation log not yet
applied``). A drain that fails is retried every :data:`RETRY_SECONDS`, so once the store answers
again the backlog is applied within that bound plus the drain itself.

A lookup sent before the relay knew of a failure may still be answered afterwards (Redis paused
for writes queues it, then answers it with the old entry before any relay applied the row): the
core checks every hit on arrival with :meth:`Relay.hit_refused` (rows pending, a failure since
the lookup was sent, or a batch read and not applied for at least the stores' ``apply_grace``:
``reason=hit arrived while the invalidation log was not applied``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import connections, transaction

from ..conf import get_settings
from ..edge.queue import enqueue as enqueue_purges
from ..stores import StoreUnavailable, all_stores
from .notify import Wake, close, listen
from .notify import wait as wait_notification

__all__ = ["BATCH", "Relay", "drain", "get_relay", "note_failed_bump"]

logger = logging.getLogger("freshcache.relay")

#: Log rows applied per transaction.
BATCH = 500
#: While rows wait that could not be applied, a drain is retried this often (seconds).
RETRY_SECONDS = 0.05
#: After a NOTIFY, the relay waits this long before it drains (seconds): see ``Relay._wait``.
NOTIFY_DEBOUNCE = 0.01
#: How long "the log is off here" is believed before it is checked again (seconds).
OFF_RECHECK_SECONDS = 5.0
#: How long the first use of the cache waits for the relay's first drain (seconds).
FIRST_DRAIN_WAIT = 2.0


#: Whether the relay reports the rows it bumped to outcome listeners (the test suite turns it
#: off where the previous test's TRUNCATEs would pollute the recent invalidations).
REPORT = True


def _report(
    rows: list[dict[str, Any]], batch: list[tuple[int, list[str]]], applied: set[int]
) -> None:
    """Tell outcome listeners and the journal (``manage.py freshcache why``) about the rows
    this relay bumped: writes from outside Django, or Django writes whose writer did not bump
    (it died, or its store was down)."""
    from .. import events

    if not (REPORT and events.listening):
        return
    for row, (mark, tags) in zip(rows, batch, strict=True):
        if mark in applied and tags:
            what = (
                f"{row.get('op') or '?'} {row.get('tbl') or '?'}"
                if row.get("source") == "trigger"
                else "a Django write its writer did not bump"
            )
            events.invalidated(frozenset(tags), f"relay: {what}", False)


def _internal(fn: Callable[[], Any]) -> Any:
    from ..capture.patch import _internal as run

    return run(fn)


def _note_lag(seconds: float) -> None:
    if get_settings().metrics:
        from ..metrics import note_relay_lag

        note_relay_lag(seconds)


def drain(
    using: str,
    *,
    limit: int = BATCH,
    on_backlog: Callable[[], None] | None = None,
    on_read: Callable[[], None] | None = None,
    on_applied: Callable[[], None] | None = None,
) -> tuple[int, int, float | None]:
    """Apply every row of the log on ``using`` to every store, then delete it.

    Return ``(rows, bumped, oldest_age_seconds)``: rows applied and deleted, rows bumped (the
    others were applied by their writer already), and the age of the oldest row bumped.
    ``on_backlog`` is called when a full batch was read (more rows wait behind it);
    ``on_read`` when a batch was read that holds a row some store has not marked as bumped
    (``Store.marked``), before it is applied to any store, and ``on_applied`` once every store
    applied it and the log's transaction committed. Raise
    :class:`~freshcache.stores.StoreUnavailable` (nothing deleted) when a store cannot be
    reached, ``DatabaseError`` when the log cannot be read.
    """
    from . import decode

    conn = connections[using]
    total = bumped = 0
    oldest: float | None = None
    while True:
        with transaction.atomic(using=using):
            with conn.cursor() as cursor:
                _internal(
                    lambda: cursor.execute(
                        "SELECT id, source, tbl, op, columns, old, new, tags, created "
                        "FROM freshcache_log ORDER BY id LIMIT %s",
                        [limit],
                    )
                )
                names = [c[0] for c in cursor.description]
                rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
            if not rows:
                break
            # Only a row some store has not bumped yet can make a hit older than its write: a
            # batch every writer bumped already (any write through Django) holds no hit, and
            # needs no apply.
            unapplied = _unapplied([int(r["id"]) for r in rows])
            if on_read is not None and unapplied:
                on_read()
            batch = [(int(r["id"]), sorted(decode(r, using))) for r in rows]
            todo = [(mark, tags) for mark, tags in batch if mark in unapplied]
            done = 0
            applied: list[int] = []
            for store in all_stores() if todo else ():
                done = max(done, store.apply(todo, applied))
            if applied:
                _report(rows, batch, set(applied))
            bumped += done
            ids = [int(r["id"]) for r in rows]
            gone = _delete(conn, ids)
            deleted = len(gone)
            # Issue 12: the edge purges of the rows deleted here, in this same transaction.
            enqueue_purges(conn, [(i, tags) for i, tags in batch if i in gone])
        # After COMMIT: a database store on the log's own database applies inside this
        # transaction (its atomic() is a savepoint here), so its bumps are seen only now.
        if on_applied is not None:
            on_applied()
        if bumped:
            created = rows[0]["created"]
            if created is not None and hasattr(created, "timestamp"):
                age = max(0.0, time.time() - created.timestamp())
                oldest = age if oldest is None else max(oldest, age)
        for store in all_stores():
            with contextlib.suppress(StoreUnavailable):  # a kept mark costs nothing
                store.forget(ids)
        total += deleted
        if len(rows) < limit or not deleted:
            break  # done, or the rows are another relay's right now (no busy loop)
        if on_backlog is not None:
            on_backlog()
    return total, bumped, oldest


def _unapplied(ids: list[int]) -> set[int]:
    """The log rows among ``ids`` that some store has not recorded as applied (``Store.marked``;
    a store that cannot tell knows of none). Raises ``StoreUnavailable`` like ``apply``."""
    known = set(ids)
    for store in all_stores():
        if not known:
            break
        known &= store.marked(sorted(known))
    return set(ids) - known


def _delete(conn: Any, ids: list[int]) -> set[int]:
    """Delete the log rows ``ids``; return the ids this call deleted (not another relay)."""
    marks = ", ".join(["%s"] * len(ids))
    sql = f"DELETE FROM freshcache_log WHERE id IN ({marks}) RETURNING id"
    if conn.vendor == "postgresql":
        # Rows another relay is deleting right now are left to it: no relay waits for another.
        sql = (
            "DELETE FROM freshcache_log WHERE id IN (SELECT id FROM freshcache_log "
            f"WHERE id IN ({marks}) FOR UPDATE SKIP LOCKED) RETURNING id"
        )
    elif not conn.features.can_return_columns_from_insert:  # SQLite before 3.35: no RETURNING
        sql = sql.removesuffix(" RETURNING id")
        select = f"SELECT id FROM freshcache_log WHERE id IN ({marks})"
        with conn.cursor() as cursor:
            _internal(lambda: cursor.execute(select, ids))
            found = {int(row[0]) for row in cursor.fetchall()}
            _internal(lambda: cursor.execute(sql, ids))
            return found
    with conn.cursor() as cursor:
        _internal(lambda: cursor.execute(sql, ids))
        return {int(row[0]) for row in cursor.fetchall()}


class Relay:
    """The relay of one process: a daemon thread and what it knows (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = Wake()
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        #: True while rows are known that could not be applied: the stores are not read.
        self.pending = False
        #: What a hit arriving from a store is checked against (:meth:`hit_refused`): batches
        #: of log rows read, how many of them every store has applied, and failed attempts to
        #: apply (a drain that failed, a bump of this process that failed). Plain integers,
        #: written by the relay's thread (and ``note_failed_bump``), read without a lock.
        self.batches_read = 0
        self.batches_applied = 0
        self.failures = 0
        #: When the latest batch was read (``time.monotonic()``), and the least ``apply_grace``
        #: of the stores it is applied to.
        self.read_at = 0.0
        self.grace = 0.0
        #: What ``manage.py freshcache relay status`` and the checks report.
        self.listening = False
        self.last_error: str | None = None
        self.drains = 0
        self.rows_applied = 0
        self.last_lag: float | None = None
        self._warned = False
        self._off: Any = None  # the settings under which the log was found off
        self._using: str | None = None

    # -- the hit path ------------------------------------------------------------------------

    def blocks_reads(self, *, wait: bool = True) -> bool:
        """True when this process must not serve from the stores (nothing is applied yet, or
        rows wait that could not be applied). Starts the relay on first use, and then waits
        up to :data:`FIRST_DRAIN_WAIT` for its first drain unless ``wait`` is false."""
        if self._thread is None:
            off = self._off
            if off is not None and off[0] is get_settings() and time.monotonic() < off[1]:
                return False
            if not self._start():
                return False
            if wait:
                self._caught_up.wait(FIRST_DRAIN_WAIT)
        return self.pending or not self._caught_up.is_set()

    def hit_refused(self, failures: int) -> bool:
        """True when a hit that just arrived from a store must not be served.

        ``failures`` is :attr:`failures` read before the lookup was sent. Refused when rows wait
        that could not be applied (``pending``), when an attempt to apply rows failed since the
        lookup was sent, or when a batch read from the log is still being applied and has been
        for at least the stores' ``apply_grace`` (its ``apply`` may have timed out, and been
        dropped, with the failure not recorded yet): the hit may have been validated by the
        store before those rows' bumps (docs/internals.md, "The guarantee, exactly")."""
        if self.pending or self.failures != failures:
            return True
        if self.batches_read == self.batches_applied:
            return False
        return time.monotonic() - self.read_at >= self.grace

    def wait_first_drain(self, timeout: float = FIRST_DRAIN_WAIT) -> bool:
        """Wait until the first drain has completed (for callers that could not wait inline)."""
        return self._thread is None or self._caught_up.wait(timeout)

    def note_failed_bump(self) -> None:
        """A bump of this process failed: its log row waits; read nothing until it is applied."""
        if self._thread is not None or self._start():
            self.failures += 1
            self.pending = True
            self._wake.set()

    # -- the thread --------------------------------------------------------------------------

    def _start(self) -> bool:
        from . import is_active

        settings = get_settings()
        using = settings.log_database
        if not settings.relay or using is None or not is_active(using):
            self._off = (settings, time.monotonic() + OFF_RECHECK_SECONDS)
            return False
        with self._lock:
            if self._thread is None:
                self._using = using
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self.run, args=(using,), name="freshcache-relay", daemon=True
                )
                self._thread.start()
        return True

    def settings_changed(self) -> None:
        """Stop the thread if the log database or ``RELAY`` changed (it reads the rest live)."""
        self._off = None
        try:
            settings = get_settings()
        except ImproperlyConfigured:  # reported by the system checks; stop relaying meanwhile
            self.stop()
            return
        if self._thread is not None and (
            not settings.relay or settings.log_database != self._using
        ):
            self.stop()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (tests, and settings changes); a later use starts a new one."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            self._wake.set()
            thread.join(timeout)
        self._caught_up.clear()
        self.pending = False
        # A batch the stopped thread was applying waits in the log for the next thread, whose
        # first drain the stores wait for (``blocks_reads``).
        self.batches_applied = self.batches_read
        self.listening = False
        self._off = None
        # A new thread reports its own first failure (and recovery) again.
        self.last_error = None
        self._warned = False

    def run(self, using: str, *, once: bool = False) -> None:
        """Drain, wait, repeat until stopped (``once``: drain until empty, then return)."""
        listener: Any = None
        failures = 0
        _start_purges(using, dedicated=self is not _relay)
        try:
            while not self._stop.is_set():
                try:
                    # A backlog (a full batch, more behind it) is stale data until applied:
                    # reads wait for it like for a failed bump.
                    rows, bumped, oldest = drain(
                        using,
                        on_backlog=self._backlog,
                        on_read=self._read,
                        on_applied=self._applied,
                    )
                except StoreUnavailable as exc:
                    self.failures += 1
                    self.pending = True
                    self._report(f"a store is unreachable: {exc}")
                    self._stop.wait(RETRY_SECONDS)
                    continue
                except Exception as exc:  # the database is down, the log table gone or locked
                    failures += 1
                    # Rows may wait that nobody applies: fail toward fresh.
                    self.failures += 1
                    self.pending = True
                    self._report(f"the invalidation log cannot be read or emptied: {exc}")
                    connections[using].close()
                    listener = _close(listener)
                    self._stop.wait(min(2.0, RETRY_SECONDS * 2**failures))
                    continue
                failures = 0
                # Whatever an earlier, failed drain read is applied now (or was by another relay).
                self.batches_applied = self.batches_read
                self.drains += 1
                self.rows_applied += bumped
                if bumped and oldest is not None:
                    self.last_lag = oldest
                    _note_lag(oldest)
                self.pending = False
                self._caught_up.set()
                if self.last_error is not None:
                    logger.warning("freshcache relay: the invalidation log is applied again")
                    self.last_error = None
                    self._warned = False
                if once or rows:
                    if once and not rows:
                        return
                    continue
                listener = self._wait(using, listener)
        finally:
            _close(listener)
            connections[using].close()

    def _backlog(self) -> None:
        self.pending = True

    def _read(self) -> None:
        # Before the count: a hit that sees the batch in flight reads this batch's time or,
        # if the batch ended and another began meanwhile, a later one.
        self.grace = min((store.apply_grace for store in all_stores()), default=0.0)
        self.read_at = time.monotonic()
        self.batches_read += 1

    def _applied(self) -> None:
        self.batches_applied = self.batches_read

    def _report(self, error: str) -> None:
        self.last_error = error
        if not self._warned:
            self._warned = True
            meanwhile = " (reads in this process stay uncached meanwhile)" if self is _relay else ""
            logger.warning("freshcache relay: %s; retrying%s", error, meanwhile)

    def _wait(self, using: str, listener: Any) -> Any:
        """Wait for a notification, a wake-up or the poll interval; return the listener."""
        poll = get_settings().relay_poll_seconds
        if listener is None:
            listener = _listen(using)
            self.listening = listener is not None
        self._wake.clear()
        deadline = time.monotonic() + poll
        while not self._stop.is_set() and not self._wake.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if listener is None:
                self._wake.wait(left)
                continue
            try:
                got = wait_notification(listener, self._wake, left)
            except Exception:
                self.listening = False
                return _close(listener)
            if got:
                if all(n.payload == "django" for n in got):
                    # Let the writer's own post-commit bump mark its rows first (it runs right
                    # after COMMIT): the drain then only checks marks, without bumping and
                    # locking. Writes from outside Django have no such bump: drained at once.
                    self._stop.wait(NOTIFY_DEBOUNCE)
                break
        return listener


def _start_purges(using: str, dedicated: bool) -> None:
    """Issue 12: purges queued by a process that died are sent by the worker of any process."""
    from ..edge.worker import get_worker

    with contextlib.suppress(Exception):
        get_worker().start(using, dedicated=dedicated)


def _listen(using: str) -> Any:
    return listen(using, "freshcache")


def _close(listener: Any) -> Any:
    close(listener)
    return None


_relay = Relay()


def get_relay() -> Relay:
    """The relay of this process."""
    return _relay


def note_failed_bump() -> None:
    """Called by ``invalidate`` when a store could not be bumped."""
    _relay.note_failed_bump()
