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

On Redis Cluster (``sharded_near_store``) each shard has a channel of its own, in its slot:
the scripts send with ``SPUBLISH``, which the master running them delivers to its own
subscribers before the reply, as ``PUBLISH`` is on one server (classic pub/sub on a cluster is
relayed to the other nodes after the reply). Each shard's channel is subscribed with
``SSUBSCRIBE`` on a connection to the master serving its slot, and is healthy on the same
terms. A master that gives the slot up (a failover that demoted it) says ``sunsubscribe``; one
that died closes the connection or stops echoing: each costs the subscription, and the next is
made on the master the slot map names then. A bump on a master that took a shard over waits
until every near cache still listening to the old one has stopped (``lua/_cluster.lua``).
"""

from __future__ import annotations

import contextlib
import functools
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
    from .base import Store
    from .near import NearStore
    from .redis import RedisStore
    from .redis_sentinel import MasterWatch

#: Seconds between two warnings about unexpected messages on one channel.
MALFORMED_WARN_EVERY = 60.0

#: Published by ``RedisStore.clear()``: every near cache empties itself.
FLUSH_MESSAGE = b"flush"

__all__ = ["AllChannels", "RedisChannel", "near_store", "sharded_near_store"]

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
        *,
        sharded: Callable[[bool], Any] | None = None,
    ) -> None:
        """``gate``: also required for health (behind Sentinel: the master is known).
        ``sharded``: on Redis Cluster, makes a client connected to the master serving the
        channel's slot (its argument: read the slot map again first); the channel is then
        subscribed there with ``SSUBSCRIBE``, and heartbeats sent with ``SPUBLISH``."""
        self._client = client
        self._sharded = sharded
        self._subscriber: Any = None
        self._subscribed_at = float("-inf")
        self._failed = False
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
        #: When a drain last succeeded (a request's or the thread's): the thread drains only
        #: when no request did for a heartbeat.
        self._drained_at = float("-inf")
        self._epoch: str | None = None
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = threading.Lock()
        self._pid = os.getpid()
        #: Counted for the tests and benchmarks (no command shows them yet).
        self.reconnects = 0
        self.malformed = 0
        self._warned_at = float("-inf")

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
                self._drained_at = time.monotonic()
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
        self._drained_at = time.monotonic()
        return True

    def _take(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "sunsubscribe":
            # A cluster node that no longer serves the slot (demoted by a failover).
            raise ConnectionError("the node gave the channel's slot up")
        if kind in ("subscribe", "ssubscribe"):
            # Confirmations are read by _subscribe: one here means redis-py reconnected and
            # subscribed again by itself. What was published meanwhile is lost.
            self.reconnects += 1
            self._near.flush()
            return
        data = message.get("data")
        if kind not in ("message", "smessage") or not isinstance(data, bytes):
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
        """Empty the near cache; warn for the first unexpected message, then at most once a
        minute with the count since (another application publishing on the channel would
        otherwise write one line per message)."""
        self.malformed += 1
        self._near.flush()
        now = time.monotonic()
        if now - self._warned_at < MALFORMED_WARN_EVERY:
            return
        self._warned_at = now
        logger.warning(
            "freshcache near cache: unexpected message on %s (%.100r; %d so far); emptied",
            self._channel,
            message,
            self.malformed,
        )

    def _subscribe(self) -> bool:
        try:
            if self._sharded is not None:
                self._subscriber = self._sharded(self._failed)
                self._serves_slot()  # before subscribing: a replica would echo too
                pubsub = self._subscriber.pubsub()
                pubsub.ssubscribe(self._channel, self._heartbeat_channel)
            else:
                pubsub = self._client.pubsub()
                pubsub.subscribe(self._channel, self._heartbeat_channel)
            # The confirmations: from here on, every bump is delivered to this connection.
            # A message between them needs no taking in: the near cache is emptied below.
            confirmed = 0
            deadline = time.monotonic() + 1.0
            while confirmed < 2 and time.monotonic() < deadline:
                message = pubsub.get_message(timeout=0.1)
                if message is not None and message.get("type") in ("subscribe", "ssubscribe"):
                    confirmed += 1
            if confirmed < 2:
                pubsub.close()
                self._failed = True
                return False
        except Exception as exc:  # on a cluster: a node that does not serve the slot (MOVED)
            logger.info("freshcache near cache: cannot subscribe to %s (%s)", self._channel, exc)
            if self._subscriber is not None:
                with contextlib.suppress(Exception):
                    self._subscriber.close()
                self._subscriber = None
            self._failed = True
            return False
        self._failed = False
        self._subscribed_at = time.monotonic()
        self._near.flush()  # what was kept before the subscription may have missed messages
        self._pubsub = pubsub
        self._drained = None
        self._epoch = None
        self.reconnects += 1
        return True

    def _unsubscribe(self) -> None:
        self._failed = self._sharded is not None  # on a cluster: read the slot map again
        self._near.flush()
        self._last_echo = float("-inf")
        self._drained = None
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                self._pubsub.close()
            self._pubsub = None
        if self._subscriber is not None:
            with contextlib.suppress(Exception):
                self._subscriber.close()
            self._subscriber = None

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
            # Under load, requests drain before each hit: the lock taken here would only turn
            # them away (``ready()`` does not wait for it), each sent to Redis while this thread
            # holds it, up to a GIL switch interval (5 ms) when it is preempted there.
            if self._pubsub is None or time.monotonic() - self._drained_at >= self.heartbeat:
                self._locked_turn()
            # Through the store's own client: the echo proves the channel delivers. No echo
            # (Redis down or stopped): unhealthy after three heartbeats, as it should be.
            with contextlib.suppress(Exception):
                if self._sharded is not None:
                    self._check_node()
                    self._client.spublish(self._heartbeat_channel, self._token.encode())
                    self._resubscribe_if_silent()
                else:
                    self._client.publish(self._heartbeat_channel, self._token.encode())
            self._closed.wait(self.heartbeat)

    def _locked_turn(self) -> None:
        with self._lock:
            try:
                if self._pubsub is None:
                    self._subscribe()
                else:
                    self._drain()
            except Exception:  # a bug must cost the near cache, never the thread
                logger.exception("freshcache near cache: channel %s failed", self._channel)
                self._unsubscribe()

    def _serves_slot(self) -> None:
        """On a cluster: raise unless the node the subscription is on serves the channel's
        slot as its master now. A key read there answers ``MOVED`` on any other node, a replica
        included (Redis 7 lets a replica take ``SSUBSCRIBE`` and relays its master's
        ``SPUBLISH`` to it through the cluster bus, after the writer has its reply, so neither
        the subscription nor the heartbeat's echo tells a demoted master from the master)."""
        self._subscriber.exists(self._channel)

    def _check_node(self) -> None:
        """Each heartbeat, on a cluster: a subscription on a node that no longer serves the
        slot (a failover demoted it) is dropped, and the next is made after reading the slot
        map again. A bump on the master that took over waits out its hold (1 s, more than a
        heartbeat: ``lua/_cluster.lua``), so this runs before any bump there returns."""
        if self._pubsub is None or self._subscriber is None:
            return
        try:
            self._serves_slot()
        except Exception as exc:
            logger.info(
                "freshcache near cache: %s moved (%s); subscribing again", self._channel, exc
            )
            with self._lock:
                self._failed = True
                self._unsubscribe()

    def _resubscribe_if_silent(self) -> None:
        """On a cluster: no echo for four heartbeats means the heartbeats go to another master
        than the subscription's (its slot moved): subscribe again where the slot map says."""
        silent = time.monotonic() - max(self._last_echo, self._subscribed_at)
        if self._pubsub is not None and silent > 4 * self.heartbeat:
            with self._lock:
                self._failed = True
                self._unsubscribe()


def near_store(store: RedisStore, own: Any, watch: MasterWatch | None) -> NearStore:
    """``store`` with a near cache in front, kept coherent through ``own`` (a client with
    connections of its own: the subscription holds one for good, which must not count against
    the store's ``max_connections``); behind Sentinel, ``watch`` closes them too on a failover
    and must vouch for the master before the near cache is used."""
    from .near import NearStore

    _check_heartbeat(store)
    if watch is not None:
        watch.add(own)
    cache = NearCache(store.near_cache)
    gate = watch.current if watch is not None else None
    channel = RedisChannel(own, store._channel, cache, store.near_heartbeat, gate)
    return NearStore(store, cache, channel)


class AllChannels:
    """The channels of every shard of a store on Redis Cluster, as one: ready when all are."""

    def __init__(self, channels: list[RedisChannel]) -> None:
        self.channels = channels

    def ready(self) -> bool:
        return all(channel.ready() for channel in self.channels)

    def close(self) -> None:
        for channel in self.channels:
            channel.close()


def sharded_near_store(store: Store, shards: list[RedisStore]) -> NearStore:
    """``store`` (a ``redis+cluster://`` store, ``redis_shards.py``) with one near cache in
    front, kept coherent by each shard's channel, subscribed on its master (module docstring)."""
    from .near import NearStore
    from .redis_cluster import node_client

    first = shards[0]
    _check_heartbeat(first)
    cache = NearCache(first.near_cache)
    channels = [
        RedisChannel(
            shard._client,
            shard._channel,
            cache,
            first.near_heartbeat,
            sharded=functools.partial(node_client, shard._client, shard._channel),
        )
        for shard in shards
    ]
    return NearStore(store, cache, AllChannels(channels))


def _check_heartbeat(store: RedisStore) -> None:
    if 3 * store.near_heartbeat >= store.socket_timeout:
        raise ValueError(
            "near_heartbeat must be less than a third of socket_timeout: the channel must "
            "be known unhealthy before a bump that cannot reach Redis gives up"
        )
