"""The purger contract: how a batch of edge keys is purged at one edge (docs/edge.md, "Purgers").

A purger is configured by one dict of ``FRESHCACHE["EDGE"]["PURGERS"]``::

    {"BACKEND": "freshcache.edge.purgers.Varnish", "URLS": ["http://127.0.0.1:6081/"]}

The purge worker (``edge/worker.py``) takes keys from the durable queue (``edge/queue.py``), cuts
them into batches that fit the API's documented limits (:meth:`Purger.batches`), waits for the
rate limiter (:class:`TokenBucket`) and calls :meth:`Purger.purge` once per batch. A batch that
raises :class:`PurgeFailed` stays queued and is retried with exponential backoff and jitter (or
after the edge's ``Retry-After``); a batch that returns is deleted from the queue. Purges are
idempotent at every edge freshcache knows, so sending a key again (after a crash, or after a
failure that the edge had in fact carried out) only costs a request.

A backend subclasses :class:`Purger`, declares :attr:`Purger.OPTIONS` (its own setting keys and
defaults, :data:`REQUIRED` for none) and the limits, and implements :meth:`Purger.purge`. SDKs
are imported inside ``purge``, never at import time: they are optional extras.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from enum import Enum
from typing import Any, ClassVar

__all__ = ["REQUIRED", "PurgeFailed", "Purger", "TokenBucket", "backoff", "check_text"]


class _Required(Enum):
    REQUIRED = "required"


#: The default of an option that has none: the setting must give it.
REQUIRED = _Required.REQUIRED


def check_text(
    options: Mapping[str, Any], names: Sequence[str], urls: Sequence[str] = ()
) -> list[str]:
    """What is wrong with the options ``names`` (given ones must be non-empty strings) and
    ``urls`` (``http://`` or ``https://`` URLs with a host): a mistake the edge's API would
    only answer, on every purge, with an error."""
    wrong = []
    for name in names:
        if name in options and (not isinstance(options[name], str) or not options[name].strip()):
            wrong.append(f"[{name!r}] must be a non-empty string, not {options[name]!r}")
    for name in urls:
        if name in options and not is_http_url(options[name]):
            wrong.append(f"[{name!r}] must be an http:// or https:// URL with a host, not "
                         f"{options[name]!r}")  # fmt: skip
    return wrong


def is_http_url(value: Any) -> bool:
    """Whether ``value`` is an ``http://`` or ``https://`` URL with a host."""
    from urllib.parse import urlsplit

    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


class PurgeFailed(Exception):
    """The edge did not confirm the purge: the batch stays queued and is retried.

    ``retry_after``: seconds the edge asked to wait (``Retry-After`` of a 429 or a 503), or
    ``None`` (exponential backoff decides). ``status``: the HTTP status, when there was one.
    """

    def __init__(self, message: str, *, retry_after: float | None = None,
                 status: int | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class Purger:
    """One edge to purge. Subclasses set the class attributes and implement :meth:`purge`."""

    #: The backend's own setting keys and their defaults (:data:`REQUIRED`: no default).
    OPTIONS: ClassVar[dict[str, Any]] = {}
    #: Most keys the edge's API accepts in one request.
    MAX_KEYS: ClassVar[int] = 100
    #: Most bytes of keys (with one separator each) in one request, or ``None``.
    MAX_BYTES: ClassVar[int | None] = None
    #: Default rate limit, in requests per second (``None``: none) and the burst above it.
    RATE: ClassVar[float | None] = None
    BURST: ClassVar[int] = 1

    def __init__(self, name: str, options: Mapping[str, Any], *, timeout: float = 10.0) -> None:
        #: The purger's name in the queue (``NAME``, by default the backend's class name).
        self.name = name
        #: The backend's options, with defaults filled in.
        self.options = {**self.OPTIONS, **options}
        #: Seconds one request may take (connect and read).
        self.timeout = timeout

    @classmethod
    def check(cls, options: Mapping[str, Any]) -> list[str]:
        """Return what is wrong with ``options`` (the backend's own keys, already known to be
        in :attr:`OPTIONS`), as ``"['KEY'] must be …"`` fragments; ``[]`` when nothing is."""
        return [f"[{key!r}] is required" for key, default in cls.OPTIONS.items()
                if default is REQUIRED and key not in options]  # fmt: skip

    def batches(self, keys: Sequence[str], max_keys: int | None = None) -> Iterator[list[str]]:
        """Cut ``keys`` into lists within :attr:`MAX_KEYS` (or the lower ``max_keys``) and
        :attr:`MAX_BYTES`, in order."""
        limit = min(self.MAX_KEYS, max_keys or self.MAX_KEYS)
        batch: list[str] = []
        size = 0
        for key in keys:
            cost = len(key.encode()) + 1
            over = self.MAX_BYTES is not None and size + cost > self.MAX_BYTES
            if batch and (len(batch) >= limit or over):
                yield batch
                batch, size = [], 0
            batch.append(key)
            size += cost
        if batch:
            yield batch

    def purge(self, keys: list[str]) -> None:
        """Purge every page labelled with any of ``keys`` (at most one batch of them).

        Return once the edge confirmed; raise :class:`PurgeFailed` otherwise (a timeout, a
        refused connection, any status but success). Never raise anything else on purpose:
        the worker treats any other exception as a failure of this batch too.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date, RFC 9110 §10.2.3),
    or ``None`` when absent or not understood."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff(attempts: int, base: float, cap: float) -> float:
    """Seconds to wait before attempt ``attempts + 1``: exponential with "full jitter" (uniform
    between 0 and ``min(cap, base * 2**attempts)``, AWS Architecture Blog, "Exponential Backoff
    And Jitter"), so that workers that failed together do not retry together."""
    return random.uniform(0.0, min(cap, base * 2 ** min(attempts, 30)))


class TokenBucket:
    """A token bucket: ``rate`` requests per second on average, ``burst`` at once. Thread-safe;
    one per purger per process (a limit for the whole site is divided among its processes)."""

    def __init__(self, rate: float | None, burst: int = 1) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def wait_time(self) -> float:
        """Take a token if one is there (return 0.0), else return the seconds until one is."""
        if self.rate is None:
            return 0.0
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.rate

    def refund(self) -> None:
        """Give back a token taken for a request that was not sent."""
        with self._lock:
            self._tokens = min(float(self.burst), self._tokens + 1.0)
