"""Waiting for PostgreSQL notifications without spinning (the relay and the purge worker).

``Connection.notifies(timeout=...)`` costs about 0.85 ms of CPU per call even when nothing
arrives (psycopg 3.2, measured), and both loops used it as a 50 ms sleep: about 17 ms of CPU per
second per process, taken from the requests (issue 11's profile under load). Here the thread
sleeps in ``select()`` on the connection's socket and a wake-up pipe instead; ``notifies`` is
called with a timeout of 0 only (free), first for what psycopg already holds (notifications
received during a statement), then when the socket is readable.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from typing import Any

__all__ = ["Wake", "close", "listen", "wait"]


class Wake:
    """A ``threading.Event`` that ``select()`` can wait on too (a pipe written on ``set``)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

    def set(self) -> None:
        self._event.set()
        with contextlib.suppress(OSError):  # the pipe is full: a wake-up is pending already
            os.write(self._write, b"w")

    def clear(self) -> None:
        self._event.clear()
        with contextlib.suppress(OSError):
            while os.read(self._read, 512):
                pass

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def fileno(self) -> int:
        return self._read


def wait(listener: Any, wake: Wake, seconds: float) -> list[Any]:
    """The notifications ``listener`` (a psycopg 3 connection that ran ``LISTEN``) receives
    within ``seconds`` (at most one: the caller drains everything anyway), or ``[]`` after
    ``seconds`` or once ``wake`` is set. Raises what psycopg raises (the connection broke)."""
    got = list(listener.notifies(timeout=0, stop_after=1))
    if got:
        return got
    ready, _, _ = select.select([listener.fileno(), wake.fileno()], [], [], max(seconds, 0.0))
    if listener.fileno() in ready:
        return list(listener.notifies(timeout=0, stop_after=1))
    return []


def listen(using: str, channel: str) -> Any:
    """A psycopg 3 (3.2+) connection to database ``using`` that ran ``LISTEN channel``, or
    ``None`` where that cannot be had (not PostgreSQL, psycopg missing or older, the connection
    refused: logged once per call at WARNING). The caller then polls instead."""
    from django.db import connections

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
        for name in ("cursor_factory", "context", "prepare_threshold", "server_side_binding"):
            params.pop(name, None)
        listener = psycopg.connect(**params, autocommit=True)
        listener.execute(f"LISTEN {channel}")
        return listener
    except Exception as exc:
        logging.getLogger("freshcache").warning(
            "freshcache: LISTEN %s failed (%s); polling instead", channel, exc
        )
        return None


def close(listener: Any) -> None:
    """Close ``listener`` (``None`` is fine), ignoring errors; return ``None``."""
    if listener is not None:
        with contextlib.suppress(Exception):
            listener.close()
