"""The invalidation channel of a Redis store: pub/sub messages that keep near caches coherent.

Every bump (``bump.lua``, ``apply.lua``) publishes ``"<version>\\n<tag>\\n<tag>..."`` on the
channel named by the store's tag prefix, inside the script: Redis queues the message to every
subscriber before it sends the bump's reply to the writer. Each process subscribes once per store
on a connection of its own, read under a lock by whoever needs it first: a request about to
serve from the near cache drains what has arrived (non-blocking), and a daemon thread drains
every ``heartbeat`` seconds and publishes a heartbeat of its own.

Healthy means: subscribed, and the process's own heartbeat came back within three heartbeats
seconds (so the channel delivers, in order, and is not lagging). The heartbeat travels on a
channel of the process's own, subscribed on the same connection: Redis writes one connection's
messages in the order they were published, so its echo proves the invalidations published
before it were delivered too, and no process reads every other process's heartbeats. Anything
else (connecting, an error reading, a reconnection, a message that does not parse, a version of
another epoch) empties the near cache and makes it unused until the channel is healthy again.

A drain costs one ``poll()`` when nothing arrived since the last one: after a drain that read
until nothing was left, only the socket can hold something new.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import select
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .near import NearCache

if TYPE_CHECKING:
    from .near import NearStore
    from .redis import RedisStore
    from .redis_sentinel import MasterWatch

#: Published by ``RedisStore.clear()``: every near cache empties itself.
FLUSH_MESSAGE = b"flush"

__all__ = ["RedisChannel", "near_store"]

logger = logging.getLogger("freshcache")

_POLL = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP


class RedisChannel:
    """Subscribes to ``channel`` with ``client`` (a ``redis.Redis``) and feeds ``near``."""

    def __init__(
        self,
        client: Any,
        channel: str,
        near: NearCache,
        heartbeat: float,
        gate: Callable[[], bool] | None = None,
    ) -> None:
        """``gate``: also required for health (behind Sentinel: the master is known)."""
        self._client = client
        self._gate = gate
        self._channel = channel
        self._near = near
        self.heartbeat = heartbeat
        self._lock = threading.Lock()
        self._pubsub: Any = None
        self._token = secrets.token_hex(8)
        #: This process's heartbeats: published and subscribed by it alone.
        self._heartbeat_channel = f"{channel}:hb:{self._token}"
        #: The socket the last complete drain emptied, and a poller on it (``_drain``).
        self._drained: Any = None
        self._poller: Any = None
        self._last_echo = float("-inf")
        self._epoch: str | None = None
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = threading.Lock()
        self._pid = os.getpid()
        #: Counted for the tests and benchmarks (no command shows them yet).
        self.reconnects = 0
        self.malformed = 0

    # -- the request side ------------------------------------------------------------------------

    def ready(self) -> bool:
        if self._gate is not None and not self._gate():
            return False
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
        connection = self._pubsub.connection
        sock = getattr(connection, "_sock", None)
        try:
            if sock is not None and sock is self._drained and not self._poller.poll(0):
                return True  # emptied by the last drain, and nothing arrived since
            while True:
                message = self._pubsub.get_message(timeout=0)
                if message is None:
                    break
                self._take(message)
            if sock is not None and sock is getattr(connection, "_sock", None):
                if sock is not self._drained:
                    self._poller = select.poll()
                    self._poller.register(sock, _POLL)
                    self._drained = sock
            else:
                self._drained = None  # redis-py changed sockets meanwhile: the slow way next
        except Exception as exc:  # a connection lost, a reply redis-py cannot parse
            logger.info("freshcache near cache: invalidation channel lost (%s)", exc)
            self._unsubscribe()
            return False
        return True

    def _take(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "subscribe":
            # Confirmations are read by _subscribe: one here means redis-py reconnected and
            # subscribed again by itself. What was published meanwhile is lost.
            self.reconnects += 1
            self._near.flush()
            return
        data = message.get("data")
        if kind != "message" or not isinstance(data, bytes):
            self._malformed(message)
            return
        if message.get("channel") == self._heartbeat_channel.encode():
            if data == self._token.encode():
                self._last_echo = time.monotonic()
            return
        if data == FLUSH_MESSAGE:
            self._near.flush()
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
            pubsub.subscribe(self._channel, self._heartbeat_channel)
            # The confirmations: from here on, every bump is delivered to this connection.
            # A message between them needs no taking in: the near cache is emptied below.
            confirmed = 0
            deadline = time.monotonic() + 1.0
            while confirmed < 2 and time.monotonic() < deadline:
                message = pubsub.get_message(timeout=0.1)
                if message is not None and message.get("type") == "subscribe":
                    confirmed += 1
            if confirmed < 2:
                pubsub.close()
                return False
        except Exception as exc:
            logger.info("freshcache near cache: cannot subscribe to %s (%s)", self._channel, exc)
            return False
        self._near.flush()  # what was kept before the subscription may have missed messages
        self._pubsub = pubsub
        self._drained = None
        self._epoch = None
        self.reconnects += 1
        return True

    def _unsubscribe(self) -> None:
        self._near.flush()
        self._last_echo = float("-inf")
        self._drained = None
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
            self._drained = None
            self._token = secrets.token_hex(8)
            self._heartbeat_channel = f"{self._channel}:hb:{self._token}"
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
                try:
                    if self._pubsub is None:
                        self._subscribe()
                    else:
                        self._drain()
                except Exception:  # a bug must cost the near cache, never the thread
                    logger.exception("freshcache near cache: channel %s failed", self._channel)
                    self._unsubscribe()
            # Through the store's own client: the echo proves the channel delivers. No echo
            # (Redis down or stopped): unhealthy after three heartbeats, as it should be.
            with contextlib.suppress(Exception):
                self._client.publish(self._heartbeat_channel, self._token.encode())
            self._closed.wait(self.heartbeat)


def near_store(store: RedisStore, own: Any, watch: MasterWatch | None) -> NearStore:
    """``store`` with a near cache in front, kept coherent through ``own`` (a client with
    connections of its own: the subscription holds one for good, which must not count against
    the store's ``max_connections``); behind Sentinel, ``watch`` closes them too on a failover
    and must vouch for the master before the near cache is used."""
    from .near import NearStore

    if 3 * store.near_heartbeat >= store.socket_timeout:
        raise ValueError(
            "near_heartbeat must be less than a third of socket_timeout: the channel must "
            "be known unhealthy before a bump that cannot reach Redis gives up"
        )
    if watch is not None:
        watch.add(own)
    cache = NearCache(store.near_cache)
    gate = watch.current if watch is not None else None
    channel = RedisChannel(own, store._channel, cache, store.near_heartbeat, gate)
    return NearStore(store, cache, channel)
