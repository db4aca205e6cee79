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
from ..stores import StoreUnavailable, all_stores

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


def _internal(fn: Callable[[], Any]) -> Any:
    from ..capture.patch import _internal as run

    return run(fn)


def drain(
    using: str, *, limit: int = BATCH, on_backlog: Callable[[], None] | None = None
) -> tuple[int, int, float | None]:
    """Apply every row of the log on ``using`` to every store, then delete it.

    Return ``(rows, bumped, oldest_age_seconds)``: rows applied and deleted, rows bumped (the
    others were applied by their writer already), and the age of the oldest row bumped.
    ``on_backlog`` is called when a full batch was read (more rows wait behind it). Raise
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
            batch = [(int(r["id"]), sorted(decode(r, using))) for r in rows]
            done = 0
            for store in all_stores():
                done = max(done, store.apply(batch))
            bumped += done
            ids = [int(r["id"]) for r in rows]
            deleted = _delete(conn, ids)
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


def _delete(conn: Any, ids: list[int]) -> int:
    marks = ", ".join(["%s"] * len(ids))
    sql = f"DELETE FROM freshcache_log WHERE id IN ({marks})"
    if conn.vendor == "postgresql":
        # Rows another relay is deleting right now are left to it: no relay waits for another.
        sql = (
            "DELETE FROM freshcache_log WHERE id IN (SELECT id FROM freshcache_log "
            f"WHERE id IN ({marks}) FOR UPDATE SKIP LOCKED)"
        )
    with conn.cursor() as cursor:
        _internal(lambda: cursor.execute(sql, ids))
        return max(0, int(cursor.rowcount))


class Relay:
    """The relay of one process: a daemon thread and what it knows (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        #: True while rows are known that could not be applied: the stores are not read.
        self.pending = False
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

    def wait_first_drain(self, timeout: float = FIRST_DRAIN_WAIT) -> bool:
        """Wait until the first drain has completed (for callers that could not wait inline)."""
        return self._thread is None or self._caught_up.wait(timeout)

    def note_failed_bump(self) -> None:
        """A bump of this process failed: its log row waits; read nothing until it is applied."""
        if self._thread is not None or self._start():
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
        self.listening = False
        self._off = None
        # A new thread reports its own first failure (and recovery) again.
        self.last_error = None
        self._warned = False

    def run(self, using: str, *, once: bool = False) -> None:
        """Drain, wait, repeat until stopped (``once``: drain until empty, then return)."""
        listener: Any = None
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    # A backlog (a full batch, more behind it) is stale data until applied:
                    # reads wait for it like for a failed bump.
                    rows, bumped, oldest = drain(using, on_backlog=self._backlog)
                except StoreUnavailable as exc:
                    self.pending = True
                    self._report(f"a store is unreachable: {exc}")
                    self._stop.wait(RETRY_SECONDS)
                    continue
                except Exception as exc:  # the database is down, the log table gone or locked
                    failures += 1
                    # Rows may wait that nobody applies: fail toward fresh.
                    self.pending = True
                    self._report(f"the invalidation log cannot be read or emptied: {exc}")
                    connections[using].close()
                    listener = _close(listener)
                    self._stop.wait(min(2.0, RETRY_SECONDS * 2**failures))
                    continue
                failures = 0
                self.drains += 1
                self.rows_applied += bumped
                if bumped and oldest is not None:
                    self.last_lag = oldest
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
                self._wake.wait(min(left, 0.05))
                continue
            try:
                got = list(listener.notifies(timeout=min(left, 0.05), stop_after=1))
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


def _listen(using: str) -> Any:
    """A psycopg 3 connection listening on ``freshcache``; ``None`` where that cannot be had."""
    conn = connections[using]
    if conn.vendor != "postgresql":
        return None
    try:
        import psycopg
    except ImportError:
        return None
    version = tuple(int(p) for p in psycopg.__version__.split(".")[:2] if p.isdigit())
    if version < (3, 2):  # notifies(timeout=...) came in psycopg 3.2: poll instead
        return None
    try:
        params = conn.get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        params.pop("prepare_threshold", None)
        params.pop("server_side_binding", None)
        listener = psycopg.connect(**params, autocommit=True)
        listener.execute("LISTEN freshcache")
        return listener
    except Exception as exc:
        logger.warning("freshcache relay: LISTEN failed (%s); polling the log instead", exc)
        return None


def _close(listener: Any) -> Any:
    if listener is not None:
        with contextlib.suppress(Exception):
            listener.close()
    return None


_relay = Relay()


def get_relay() -> Relay:
    """The relay of this process."""
    return _relay


def note_failed_bump() -> None:
    """Called by ``invalidate`` when a store could not be bumped."""
    _relay.note_failed_bump()
