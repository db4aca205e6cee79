"""The invalidation channel of a Redis store: pub/sub messages that keep near caches coherent.

Every bump (``bump.lua``, ``apply.lua``) publishes ``"<version>\\n<tag>\\n<tag>..."`` on the
channel named by the store's tag prefix, inside the script: Redis queues the message to every
subscriber before it sends the bump's reply to the writer. Each process subscribes once per store
on a connection of its own, read under a lock by whoever needs it first: a request about to
serve from the near cache drains what has arrived (non-blocking), and a daemon thread drains
every ``heartbeat`` seconds and publishes a heartbeat of its own.

Healthy means: subscribed, and the process's own heartbeat came back within three heartbeats
seconds (so the channel delivers, in order, and is not lagging). Anything else (connecting, an
error reading, a reconnection, a message that does not parse, a version of another epoch) empties
the near cache and makes it unused until the channel is healthy again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
from typing import Any

from .near import NearCache

#: Published by ``RedisStore.clear()``: every near cache empties itself.
FLUSH_MESSAGE = b"flush"

__all__ = ["RedisChannel"]

logger = logging.getLogger("freshcache")

_HEARTBEAT = b"hb "


class RedisChannel:
    """Subscribes to ``channel`` with ``client`` (a ``redis.Redis``) and feeds ``near``."""

    def __init__(self, client: Any, channel: str, near: NearCache, heartbeat: float) -> None:
        self._client = client
        self._channel = channel
        self._near = near
        self.heartbeat = heartbeat
        self._lock = threading.Lock()
        self._pubsub: Any = None
        self._token = secrets.token_hex(8)
        self._last_echo = float("-inf")
        self._epoch: str | None = None
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = threading.Lock()
        self._pid = os.getpid()
        #: What ``manage.py freshcache`` and the tests can read.
        self.reconnects = 0
        self.malformed = 0

    # -- the request side ------------------------------------------------------------------------

    def ready(self) -> bool:
        self._ensure_thread()
        if not self._lock.acquire(blocking=False):
            return False  # another thread is draining or reconnecting: not known to be current
        try:
            if self._pubsub is None or not self._drain():
                return False
            return time.monotonic() - self._last_echo < 3 * self.heartbeat
        finally:
            self._lock.release()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self._unsubscribe()

    # -- under the lock --------------------------------------------------------------------------

    def _drain(self) -> bool:
        """Take in every message that has arrived; False (and the near cache emptied) on error."""
        try:
            while True:
                message = self._pubsub.get_message(timeout=0)
                if message is None:
                    return True
                self._take(message)
        except Exception as exc:  # a connection lost, a reply redis-py cannot parse
            logger.info("freshcache near cache: invalidation channel lost (%s)", exc)
            self._unsubscribe()
            return False

    def _take(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "subscribe":
            return
        data = message.get("data")
        if kind != "message" or not isinstance(data, bytes):
            self._malformed(message)
            return
        if data == FLUSH_MESSAGE:
            self._near.flush()
            return
        if data.startswith(_HEARTBEAT):
            if data[len(_HEARTBEAT) :].decode("ascii", "replace") == self._token:
                self._last_echo = time.monotonic()
            return
        version, _, rest = data.partition(b"\n")
        epoch, colon, _ = version.partition(b":")
        if not colon or not rest:
            self._malformed(message)
            return
        epoch_text = epoch.decode("utf-8", "replace")
        if self._epoch is not None and epoch_text != self._epoch:
            self._near.flush()  # a new epoch: the sequence was lost, versions start again
        self._epoch = epoch_text
        try:  # decoded as the store decodes the tags of a hit, so the names match
            tags = [t.decode() for t in rest.split(b"\n")]
        except UnicodeDecodeError:
            self._malformed(message)
            return
        self._near.invalidate(tags)

    def _malformed(self, message: Any) -> None:
        self.malformed += 1
        logger.warning(
            "freshcache near cache: unexpected message on %s (%.100r); emptied", self._channel,
            message,
        )
        self._near.flush()

    def _subscribe(self) -> bool:
        try:
            pubsub = self._client.pubsub()
            pubsub.subscribe(self._channel)
            # The confirmation: from here on, every bump is delivered to this connection.
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                message = pubsub.get_message(timeout=0.1)
                if message is not None and message.get("type") == "subscribe":
                    break
            else:
                pubsub.close()
                return False
        except Exception as exc:
            logger.info("freshcache near cache: cannot subscribe to %s (%s)", self._channel, exc)
            return False
        self._near.flush()  # what was kept before the subscription may have missed messages
        self._pubsub = pubsub
        self._epoch = None
        self.reconnects += 1
        return True

    def _unsubscribe(self) -> None:
        self._near.flush()
        self._last_echo = float("-inf")
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                self._pubsub.close()
            self._pubsub = None

    # -- the daemon thread -----------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._pid != os.getpid():
            # A forked child (gunicorn --preload): the parent's thread, lock and subscription
            # are not its own. Start afresh, with nothing kept.
            self._pid = os.getpid()
            self._thread = None
            self._pubsub = None
            self._lock = threading.Lock()
            self._last_echo = float("-inf")
            self._near.flush()
        if self._thread is not None or self._closed.is_set():
            return
        with self._started:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"freshcache-near {self._channel}", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._closed.is_set():
            with self._lock:
                if self._pubsub is None:
                    self._subscribe()
                else:
                    self._drain()
            # Through the store's own client: the echo proves the channel delivers. No echo
            # (Redis down or stopped): unhealthy after three heartbeats, as it should be.
            with contextlib.suppress(Exception):
                self._client.publish(self._channel, _HEARTBEAT + self._token.encode())
            self._closed.wait(self.heartbeat)
