"""The purge worker: sends the purge queue (``queue.py``) to each purger, in every web process.

A daemon thread per process, started when this process's relay starts (``log/relay.py``) and
when it queues keys, and by ``manage.py freshcache relay``; any number may run, anywhere: the
queue's claims keep them from sending one key together. The loop, for each configured purger:

1. claim up to ``BATCH`` due keys; cut them into requests within the API's limits;
2. for each request, wait for the purger's token bucket, then :meth:`Purger.purge`;
3. delete what the edge confirmed (``queue.done``), or put it back with a delay
   (``queue.failed``): the edge's ``Retry-After`` if it sent one (a 429 or a 503), else
   exponential backoff with full jitter from ``BACKOFF`` up to ``MAX_BACKOFF``.

Then it waits for a wake-up from this process's relay, ``NOTIFY freshcache_purge`` (queued in
another process; psycopg 3 ``LISTEN``), the next due retry, or ``RELAY_POLL_SECONDS``. The worker
never raises into anything: a purger that fails, or a database that is down, is logged (once per
failure streak) and retried.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.db import connections

from ..log.notify import Wake, close, listen
from ..log.notify import wait as wait_notification
from . import queue

__all__ = ["PurgeWorker", "get_worker"]

logger = logging.getLogger("freshcache.edge")

#: After the database failed, the worker retries this often at most (seconds).
MAX_DATABASE_RETRY = 5.0


class PurgeWorker:
    """The purge worker of one process (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._using: str | None = None
        self._wake = Wake()
        self._stop = threading.Event()
        self._buckets: dict[Any, Any] = {}
        #: Seconds until a purger skipped for its rate limit may send again.
        self._resume: float | None = None
        self._dedicated = False
        #: Requests sent and keys confirmed by this worker (tests and benchmarks read them).
        self.requests = 0
        self.purged = 0
        self.last_error: str | None = None

    def start(self, using: str, *, dedicated: bool = False) -> None:
        """Start the thread for the log database ``using`` if purgers are configured.

        ``dedicated``: for ``manage.py freshcache relay``; otherwise the thread stops once
        ``RELAY`` is ``False`` (like the relay of a web process)."""
        from ..conf import get_settings

        if not get_settings().edge.purgers:
            return
        with self._lock:
            self._dedicated = self._dedicated or dedicated
            if self._thread is None or not self._thread.is_alive():
                self._using = using
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self.run, args=(using,), name="freshcache-purge", daemon=True
                )
                self._thread.start()

    def wake(self, using: str) -> None:
        """Keys were queued: send them now (starts the thread on first use, unless ``RELAY`` is
        ``False``: a dedicated ``manage.py freshcache relay`` then sends them)."""
        from ..conf import get_settings

        if get_settings().relay:
            self.start(using)
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (tests, shutdown); a later :meth:`start` starts a new one."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            self._wake.set()
            thread.join(timeout)
        self._dedicated = False

    def run(self, using: str, *, once: bool = False) -> None:
        """Send, wait, repeat until stopped (``once``: until nothing is due, then return)."""
        from ..conf import get_settings

        listener: Any = None
        failures = 0
        try:
            while not self._stop.is_set():
                if not once and not self._dedicated and not get_settings().relay:
                    return  # the in-process relay is off: so is this worker
                try:
                    sent = self.send_due(using)
                    wait = None if sent else queue.next_due(using)
                    if self._resume is not None:
                        wait = self._resume if wait is None else min(wait, self._resume)
                except Exception as exc:  # the database is down, the table missing
                    failures += 1
                    self._report(f"the purge queue cannot be read or written: {exc!r}")
                    connections[using].close()
                    listener = _close(listener)
                    if once:
                        raise
                    self._stop.wait(min(MAX_DATABASE_RETRY, 0.1 * 2**failures))
                    continue
                failures = 0
                if sent:
                    continue
                if once and (wait is None or wait > 0):
                    return
                listener = self._wait(using, listener, wait)
        finally:
            _close(listener)
            connections[using].close()

    def send_due(self, using: str) -> int:
        """One pass over the purgers: send what is due; return the requests sent. A purger
        whose token bucket is empty is skipped (:attr:`_resume` says when to come back)."""
        from ..conf import get_settings

        requests = 0
        self._resume = None
        for settings in get_settings().edge.purgers:
            if self._stop.is_set():
                break
            requests += self._send(using, settings)
        return requests

    def _bucket(self, settings: Any) -> Any:
        from .purgers.base import TokenBucket

        bucket = self._buckets.get(settings)
        if bucket is None:
            bucket = self._buckets[settings] = TokenBucket(settings.rate, settings.burst)
        return bucket

    def _later(self, pause: float) -> None:
        self._resume = pause if self._resume is None else min(self._resume, pause)

    def _send(self, using: str, settings: Any) -> int:
        from .purgers.base import PurgeFailed, backoff

        purger = settings.build()
        bucket = self._bucket(settings)
        # A token before claiming: claimed keys then wait for nothing but the edge.
        pause = bucket.wait_time()
        if pause:
            self._later(pause)
            return 0
        claimed = queue.claim(using, settings.name, settings.batch, settings.claim_seconds)
        if not claimed:
            bucket.refund()
            return 0
        by_key = {c.key: c for c in claimed}
        sent = 0
        for keys in purger.batches(list(by_key), settings.batch):
            batch = [by_key[k] for k in keys]
            if sent:
                pause = bucket.wait_time()
                if pause:  # sent once the bucket allows; not a failure (attempts unchanged)
                    queue.release(using, batch, pause)
                    self._later(pause)
                    continue
            sent += 1
            self.requests += 1
            try:
                purger.purge(keys)
            except Exception as exc:
                retry = exc.retry_after if isinstance(exc, PurgeFailed) else None
                attempts = max(c.attempts for c in batch)
                delay = retry if retry is not None else backoff(
                    attempts, settings.backoff, settings.max_backoff
                )
                message = str(exc) if isinstance(exc, PurgeFailed) else repr(exc)
                self._report(f"{settings.name}: {len(keys)} key(s) not purged: {message}")
                queue.failed(using, batch, message, delay)
                continue
            self.purged += queue.done(using, batch, settings.settle)
            if self.last_error is not None:
                logger.warning("freshcache purge: %s purges again", settings.name)
                self.last_error = None
        return sent

    def _report(self, error: str) -> None:
        if self.last_error is None:
            logger.warning("freshcache purge: %s; retrying", error)
        self.last_error = error

    def _wait(self, using: str, listener: Any, due: float | None) -> Any:
        from ..conf import get_settings

        timeout = get_settings().relay_poll_seconds
        if due is not None:
            timeout = min(timeout, max(due, 0.005))
        if listener is None:
            listener = _listen(using)
        deadline = time.monotonic() + timeout
        while not self._stop.is_set() and not self._wake.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if listener is None:
                self._wake.wait(left)
                continue
            try:
                if wait_notification(listener, self._wake, left):
                    break
            except Exception:
                return _close(listener)
        self._wake.clear()
        return listener


def _listen(using: str) -> Any:
    return listen(using, queue.CHANNEL)


def _close(listener: Any) -> Any:
    close(listener)
    return None


_worker = PurgeWorker()


def get_worker() -> PurgeWorker:
    """The purge worker of this process."""
    return _worker
