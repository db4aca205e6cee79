"""The Redis store: shared by every process, one round trip per hit and per bump.

Layout under the key prefix ``P`` (wrapped in braces so that every key hashes to one Redis
Cluster slot and the scripts may touch them together):

* ``{P}:epoch``  random token naming the current epoch;
* ``{P}:seq``    the global sequence (an integer, INCR only);
* ``{P}:seq:copy`` the highest value the scripts saw the sequence at: a sequence below it (set
  back by hand, or not an integer at all) starts a new epoch (``lua/_position.lua``);
* ``{P}:t:TAG``  the tag's version, ``"<epoch>:<seq>."`` after a bump, ``"<epoch>:<seq>:<nonce>."``
  when first seen; it expires ``TIMEOUT`` after its bump, and is kept at least as long as every
  entry stored with it (expiry and eviction are safe: see ``lua/set.lua``);
* ``{P}:e:KEY``  an entry: one string, ``"<epoch>\\n<n>\\n"``, n bytes of ``"tag\\tversion\\n"``
  (its tags and their versions), then the payload: a tag costs its own bytes, nothing more. It
  expires after its timeout (``TIMEOUT``), so ``volatile-*`` eviction policies can evict it.
* ``{P}:server`` the run id of the Redis server the current epoch belongs to;
* ``{P}:l:KEY``  the lease on entry KEY (single flight): the holder's token, 16 hex digits,
  with the lease's time to live (``lua/acquire.lua``, ``lua/release.lua``);
* ``{P}:m:ID``   the mark of invalidation-log row ID, set with the bump that applied it (it
  holds the epoch's token); it expires after :data:`MARK_TTL_MS` (a relay applies a row within
  seconds; an expired mark costs one extra bump, never a lost one).

Every operation is one Lua script (``lua/``), so each check-and-act is atomic on the server.

Garbage: any of these keys may hold what freshcache did not write (another type, another
application's value, a hand-typed ``SET``). The scripts read every key without failing on it and
treat such a value as missing: an entry misses and is deleted, a tag version counts as lost (the
first-sighting rule then applies), a mark is no mark (its row is bumped again), and a sequence
or epoch that cannot be trusted starts a new epoch, logged once at WARNING. A reply the client
cannot parse is a bypass (:class:`StoreUnavailable`), never an exception for the caller.

Failure handling: a circuit breaker stops lookups and stores for ``BREAKER_SECONDS`` after an
error, never bumps; a bump that fails and has no invalidation-log row is replayed before this
process talks to Redis again (``redis_outage.py``).

Restarts: every new connection first runs ``lua/fence.lua`` with the server's run id, so a
server that restarted (possibly from an RDB/AOF file older than some acknowledged bumps) or a
replica promoted in its place starts a new epoch before it serves anything.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from ..conf import MAX_LEASE_SECONDS
from .base import Hit, Snapshot, Store, Stored, StoreUnavailable
from .journal import Journal
from .near import MIN_NEAR_CACHE, parse_size
from .redis_cluster import SCHEMES as CLUSTER_SCHEMES
from .redis_cluster import cluster_client
from .redis_lua import CORRUPT, fence, script
from .redis_memory import MemoryConfig, memory_config
from .redis_options import CLUSTER_HOLD_MS, read_options
from .redis_outage import Outage
from .redis_sentinel import SCHEMES as SENTINEL_SCHEMES
from .redis_sentinel import MasterWatch, own_client, sentinel_setup

__all__ = ["MIN_NEAR_CACHE", "RedisStore", "parse_size"]

logger = logging.getLogger("freshcache.stores.redis")

T = TypeVar("T")


#: How long the mark of an applied invalidation-log row is kept (milliseconds).
MARK_TTL_MS = 600_000

class RedisStore(Store):
    """``redis://[:password@]host:port/db?prefix=fc&socket_timeout=0.25`` (or ``rediss://``),
    or ``redis+sentinel://host:26379,host:26380/SERVICE/db?…`` behind Redis Sentinel
    (``redis_sentinel.py``), or ``redis+cluster://host:7000,host:7001?…`` on Redis Cluster
    (``redis_cluster.py``)."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        prefix: str = "fc",
        socket_timeout: float = 0.25,
        connect_timeout: float = 0.25,
        breaker_seconds: float = 2.0,
        timeout: float | None = None,
        client: Any = None,
        shard: str | None = None,
    ) -> None:
        """``timeout``: seconds a bumped tag version is kept (``None``: for ever); entries
        stored with it lengthen its life to theirs. ``shard``: this store is one shard of a
        ``redis+cluster://`` store (``redis_shards.py``), whose keys have this prefix instead of
        the URL's; ``client``: the cluster client to share, else one is made from ``url``."""
        super().__init__(name, url)
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - exercised by the system check
            raise ImportError(
                "The redis store needs the redis package: pip install 'django-freshcache[redis]'"
            ) from exc
        parts = urlsplit(url)
        options = read_options(
            parts,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
            breaker_seconds=breaker_seconds,
        )
        rest = options.rest
        prefix = shard or options.prefix or prefix
        self.socket_timeout = options.socket_timeout
        self.connect_timeout = options.connect_timeout
        self.breaker_seconds = options.breaker_seconds
        # Redis runs commands in the order they arrive (and unblocks clients paused by CLIENT
        # PAUSE in the order they were paused); redis-py drops a command only when its socket
        # times out, which takes at least this long.
        self.apply_grace = self.socket_timeout
        #: Bytes of near cache (``stores/near.py``) in front of this store; 0: none.
        self.near_cache = options.near_cache
        #: Seconds between heartbeats on the invalidation channel (``redis_options.py``).
        self.near_heartbeat = options.near_heartbeat
        #: Redis Cluster: the cluster's ``cluster-node-timeout`` the quorum guard assumes (s).
        self.node_timeout = options.node_timeout
        # RedisClusterException is not a RedisError: redis-py's cluster client raises it when
        # no node answers its request for the slot map (every node down, unreachable or paused),
        # also in the middle of a command. It is an outage like any other.
        self._redis_errors: tuple[type[BaseException], ...] = (
            redis.RedisError,
            redis.exceptions.RedisClusterException,
            OSError,
        )
        self._tag_ttl_ms = 0 if timeout is None else max(1, int(timeout * 1000))
        base = self._base = "{" + prefix + "}"
        self._server_key = f"{base}:server"
        self._hold_key = f"{base}:hold"
        connection: dict[str, Any] = {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.connect_timeout,
            "retry_on_timeout": False,
            "retry": None,
            "health_check_interval": 0,
            "redis_connect_func": self._on_connect,
        }
        #: Behind Sentinel: keeps this process on the master the sentinels name (else None).
        self._watch: MasterWatch | None = None
        self._hold_ms = 0
        #: On Redis Cluster: the fence runs in every script (``redis_cluster.py``).
        self.cluster = parts.scheme in CLUSTER_SCHEMES
        #: The last position this process read (a miss, ``begin``, a bump), or None.
        self.last: Snapshot | None = None
        if client is not None:
            self._client = client
        elif parts.scheme in SENTINEL_SCHEMES:
            self._client, self._watch, self._hold_ms = sentinel_setup(parts, rest, connection)
        elif self.cluster:
            self._client = cluster_client(parts, rest, **connection)
        else:
            self._client = redis.Redis.from_url(
                urlunsplit(parts._replace(query=rest)), **connection
            )
        self._epoch_key = f"{base}:epoch"
        self._seq_key = f"{base}:seq"
        self._copy_key = f"{base}:seq:copy"
        self._tag_prefix = f"{base}:t:"
        # Pub/sub ignores database numbers: the channel names the database, so two sites that
        # share a server and a prefix in different databases do not hear each other's bumps.
        db = 0 if self.cluster else self._client.connection_pool.connection_kwargs.get("db", 0)
        self._channel = f"{base}:c:{db}"
        self._entry_prefix = f"{base}:e:"
        self._mark_prefix = f"{base}:m:"
        self._lease_prefix = f"{base}:l:"
        self._scripts = {
            name: self._client.register_script(
                script(name, cluster=self.cluster, node_timeout_ms=int(self.node_timeout * 1000))
            )
            for name in ("lookup", "set", "bump", "apply", "begin", "rotate", "acquire", "release")
        }
        self._outage = Outage(self)
        self._fence_script = script("fence")
        self._bad_reply_logged = False

    def _on_connect(self, connection: Any) -> None:
        """Fence every new connection (see the module docstring) before it is used."""
        keys = (self._epoch_key, self._server_key, self._seq_key, self._copy_key, self._hold_key)
        if fence(connection, self._fence_script, keys, self._hold_ms) == CORRUPT:
            logger.warning(
                "freshcache store %r: the server key %s held a value freshcache did not write; "
                "started a new epoch: every entry misses once",
                self.name,
                self._server_key,
            )

    # -- failure handling (redis_outage.py) --------------------------------------------------

    def _call(self, fn: Callable[[], T], *, breaker: bool = True) -> T:
        watch = self._watch
        if breaker and watch is not None and not watch.current():
            raise StoreUnavailable(f"{self!r}: the sentinels did not answer for a while")
        return self._outage.call(fn, breaker=breaker)

    def _hold(self, left_ms: Any = None) -> None:
        """After a bump: wait while the new master's hold lasts, so that every process left
        the old master before the write returns. Behind Sentinel the hold is read here
        (``lua/fence.lua`` set it); on a cluster ``left_ms`` is the bump's reply
        (``lua/_cluster.lua``, at most :data:`CLUSTER_HOLD_MS`)."""
        if self.cluster:
            if isinstance(left_ms, int) and left_ms > 0:
                time.sleep(min(left_ms, CLUSTER_HOLD_MS) / 1000)
            return
        if self._hold_ms:
            ttl = self._call(lambda: self._client.pttl(self._hold_key), breaker=False)
            if isinstance(ttl, int) and ttl > 0:
                time.sleep(min(ttl, self._hold_ms) / 1000)

    @property
    def pending_repair(self) -> bool:
        """True while bumps that failed during an outage wait to be replayed."""
        return self._outage.pending

    # -- the contract ------------------------------------------------------------------------

    def _position_keys(self) -> list[str]:
        """The position's keys; on a cluster also the fence's server key and the quorum guard's
        alive key (``_declared``, ``lua/_cluster.lua``)."""
        keys = [self._epoch_key, self._seq_key, self._copy_key]
        return [*keys, self._server_key, self._base + ":alive"] if self.cluster else keys

    def _declared(self, tags: Iterable[str], marks: Iterable[int] = ()) -> list[str]:
        """On a cluster, the tag version and mark keys a script writes, declared after the
        keys it uses by index (the scripts never read these extra ``KEYS``): during a
        resharding, Redis then runs the script where all of its keys are, or answers
        ``TRYAGAIN`` while they are split or some do not exist yet (a bypass, or a bump kept
        for the replay), rather than letting it create, on the importing node, keys the
        migrating node still holds (``BUSYKEY`` would stop the move). The hold key is not
        declared: it rarely exists, and a missing declared key is a ``TRYAGAIN`` for every
        script of the shard while its slot moves. Nothing on a single Redis."""
        if not self.cluster:
            return []
        return [
            *dict.fromkeys(self._tag_prefix + tag for tag in tags),
            *dict.fromkeys(self._mark_prefix + str(mark) for mark in marks),
        ]

    def _rotate(self) -> None:
        self._scripts["rotate"](keys=self._position_keys(), args=[secrets.token_hex(8)])

    def _status(self, status: Any) -> None:
        """Log the new epoch a script started because the position held garbage."""
        if status == CORRUPT:
            logger.warning(
                "freshcache store %r: the sequence or epoch keys under %s held values freshcache "
                "did not write (another type, not an integer, or a sequence set back); started "
                "a new epoch: every entry misses once",
                self.name,
                self._epoch_key[: -len(":epoch")],
            )

    def _bad_reply(self, what: str, reply: Any, exc: BaseException) -> StoreUnavailable:
        """A reply the scripts never send (a proxy, another server): bypass, warn once."""
        if not self._bad_reply_logged:
            self._bad_reply_logged = True
            logger.warning(
                "freshcache store %r: unexpected %s reply %.200r (%s); computing uncached",
                self.name,
                what,
                reply,
                exc,
            )
        return StoreUnavailable(f"{self!r}: unexpected {what} reply")

    def _snapshot(self, what: str, reply: Any, epoch: Any, seq: Any, status: Any) -> Snapshot:
        self._status(status)
        try:
            if not isinstance(epoch, bytes):
                raise TypeError(f"epoch {epoch!r} is not a string")
            snapshot = self.last = Snapshot(epoch.decode(), int(seq))
            return snapshot
        except (TypeError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
            raise self._bad_reply(what, reply, exc) from exc

    def lookup(self, key: str) -> Hit | Snapshot:
        reply: Any = self._call(
            lambda: self._scripts["lookup"](
                keys=[self._entry_prefix + key, *self._position_keys()],
                args=[self._tag_prefix, secrets.token_hex(8)],
            )
        )
        try:
            if reply[0] == 1:
                start = reply[2]
                if not isinstance(start, int) or not 1 <= start <= len(reply[1]) + 1:
                    raise ValueError("payload start outside the entry")
                payload = bytes(reply[1][start - 1 :])
                return Hit(payload, frozenset(t.decode() for t in reply[3:]))
            _, epoch, seq, status = reply
        except (TypeError, ValueError, IndexError, AttributeError) as exc:
            raise self._bad_reply("lookup", reply, exc) from exc
        return self._snapshot("lookup", reply, epoch, seq, status)

    def begin(self) -> Snapshot:
        reply: Any = self._call(
            lambda: self._scripts["begin"](keys=self._position_keys(), args=[secrets.token_hex(8)])
        )
        try:
            epoch, seq, status = reply
        except (TypeError, ValueError) as exc:
            raise self._bad_reply("begin", reply, exc) from exc
        return self._snapshot("begin", reply, epoch, seq, status)

    def set(
        self,
        key: str,
        payload: bytes,
        tags: Collection[str],
        snapshot: Snapshot,
        timeout: float | None = None,
    ) -> bool:
        ttl_ms = 0 if timeout is None else max(1, int(timeout * 1000))
        reply: Any = self._call(
            lambda: self._scripts["set"](
                keys=[self._entry_prefix + key, *self._position_keys(), *self._declared(tags)],
                args=[
                    self._tag_prefix,
                    snapshot.epoch,
                    snapshot.seq,
                    ttl_ms,
                    payload,
                    secrets.token_hex(6),
                    secrets.token_hex(8),
                    *tags,
                ],
            )
        )
        try:
            stored, status = reply
        except (TypeError, ValueError) as exc:
            raise self._bad_reply("set", reply, exc) from exc
        self._status(status)
        return stored == 1

    def _run_bump(self, tags: Collection[str], marks: Collection[int] = ()) -> Any:
        reply: Any = self._scripts["bump"](
            keys=[*self._position_keys(), *self._declared(tags, marks)],
            args=[
                self._tag_prefix,
                secrets.token_hex(8),
                self._mark_prefix,
                MARK_TTL_MS,
                self._tag_ttl_ms,
                self._channel,
                len(marks),
                *marks,
                *tags,
            ],
        )
        # The bump is made whatever the reply says; its status is only worth a warning.
        if isinstance(reply, list) and len(reply) == 4:
            self._status(reply[1])
            self._fence(reply[2])
            epoch, _, seq = reply[0].partition(b":") if isinstance(reply[0], bytes) else (b"",) * 3
            if seq.endswith(b".") and seq[:-1].isdigit():  # a version, "<epoch>:<seq>."
                self.last = Snapshot(epoch.decode(), int(seq[:-1]))
            return reply[3]
        return None

    def _fence(self, receivers: Any) -> None:
        """After a bump that near caches were sent: one more round trip before returning.

        Redis queues the message to each subscriber before the bump's reply, but writes its
        clients' sockets one after the other: the writer could read its reply, return and tell
        another process, which then finds nothing in its socket yet. Redis answers this round
        trip only after it has written every socket of the bump's turn (docs/internals.md, "The
        near cache"). Without subscribers, nothing is done.
        """
        if isinstance(receivers, int) and receivers > 0:
            self.probe()  # on a cluster, the master that ran the script (its slot's)

    def bump(
        self, tags: Collection[str], marks: Collection[int] = (), *, held: list[int] | None = None
    ) -> None:
        """The contract's bump. ``held``: on a cluster, the hold (ms) is appended to it rather
        than waited for (``ShardedRedisStore`` waits once for all its shards)."""
        if not tags and not marks:
            return
        try:
            left = self._call(lambda: self._run_bump(tags, marks), breaker=False)
            if held is None:
                self._hold(left)
            elif isinstance(left, int):
                held.append(left)
        except StoreUnavailable:
            if not marks:  # nothing else holds this invalidation: keep it for the replay
                self._outage.remember_failed(tags)
            raise

    def apply(
        self,
        batch: Sequence[tuple[int, Collection[str]]],
        bumped: list[int] | None = None,
        *,
        held: list[int] | None = None,
    ) -> int:
        """The contract's apply; ``held`` as for :meth:`bump`."""
        if not batch:
            return 0
        args: list[Any] = [
            self._tag_prefix,
            secrets.token_hex(8),
            self._mark_prefix,
            MARK_TTL_MS,
            self._tag_ttl_ms,
            self._channel,
        ]
        for mark, tags in batch:
            args += [mark, len(tags), *tags]
        every_tag = [tag for _, tags in batch for tag in tags]
        keys = [*self._position_keys(), *self._declared(every_tag, [m for m, _ in batch])]
        reply: Any = self._call(
            lambda: self._scripts["apply"](keys=keys, args=args),
            breaker=False,
        )
        try:
            applied, status, receivers, *marks = reply
            count = int(applied)
            done = [int(m) for m in marks[0]] if marks else []
            hold = marks[1] if len(marks) > 1 else None
        except (TypeError, ValueError) as exc:
            # Whether the rows were bumped is unknown: they stay in the log and are applied
            # again (an extra bump costs a miss; a skipped one would be stale).
            raise self._bad_reply("apply", reply, exc) from exc
        self._status(status)
        # Through the breaker's error handling, as the bump itself: a StoreUnavailable, never
        # a raw driver error, if Redis stops answering between the reply and the fence.
        self._call(lambda: self._fence(receivers), breaker=False)
        if held is None:
            self._hold(hold)
        elif isinstance(hold, int):
            held.append(hold)
        if bumped is not None:
            bumped.extend(done)
        return count

    def acquire(self, key: str, ttl: float) -> str | None:
        token = secrets.token_hex(8)
        reply: Any = self._call(
            lambda: self._scripts["acquire"](
                keys=[self._lease_prefix + key],
                args=[token, max(1, int(ttl * 1000)), MAX_LEASE_SECONDS * 1000],
            )
        )
        if reply == 1:
            return token
        if reply == 0:
            return None
        raise self._bad_reply("acquire", reply, ValueError("not 0 or 1"))

    def release(self, key: str, token: str) -> None:
        if token:
            self._call(
                # Behind the breaker: while Redis is failing, the lease ends with its time to live
                # rather than costing the holder a socket timeout.
                lambda: self._scripts["release"](keys=[self._lease_prefix + key], args=[token])
            )

    def clear(self) -> None:
        def run() -> None:
            self._rotate()
            base = self._epoch_key[: -len(":epoch")]
            # On a cluster, only the master serving this shard's slot (redis-py scans every
            # master otherwise: one that is down would fail every shard's clear).
            where = {"target_nodes": self._client.get_node_from_key(base)} if self.cluster else {}
            for pattern in (f"{base}:e:*", f"{base}:t:*", f"{base}:l:*"):
                batch = []
                for k in self._client.scan_iter(match=pattern, count=1000, **where):
                    batch.append(k)
                    if len(batch) >= 1000:
                        self._client.delete(*batch)
                        batch = []
                if batch:
                    self._client.delete(*batch)
            # Every process's near cache empties too (a deploy's clear must reach them all).
            from .redis_channel import FLUSH_MESSAGE

            publish = self._client.spublish if self.cluster else self._client.publish
            self._fence(publish(self._channel, FLUSH_MESSAGE))

        self._call(run)

    def inspect(self, key: str) -> Stored | None:
        from .redis_inspect import inspect

        return inspect(self, key)

    def probe(self) -> Any:
        """One round trip to the server holding this store's keys (raises the driver's error):
        ``PING``, or on a cluster a read of a key of the store's slot (redis-py sends it to
        the master serving that slot, following the slot map as it changes)."""
        if self.cluster:
            return self._client.exists(self._epoch_key) >= 0
        return self._client.ping()

    def ping(self) -> bool:
        """Return True if Redis answers now (used by the system check)."""
        try:
            return bool(self.probe())
        except self._redis_errors:
            return False

    def memory_config(self) -> MemoryConfig | None:
        """Redis's ``maxmemory`` and ``maxmemory-policy``, or None if they cannot be read
        (``CONFIG`` disabled or renamed, as on many managed services; Redis unreachable)."""
        return memory_config(self._client)

    def near(self) -> Store:
        """This store with a near cache in front, if ``near_cache`` asks for one, else itself."""
        if not self.near_cache:
            return self
        from .redis_channel import near_store

        return near_store(self, own_client(self._client), self._watch)

    def journal(self) -> Journal:
        from .redis_journal import RedisJournal

        journal = self.__dict__.get("_journal")
        if journal is None:
            journal = self.__dict__.setdefault("_journal", RedisJournal(self, self._base))
        return journal

    def close(self) -> None:
        self._outage.close()
        if self._watch is not None:
            self._watch.close()
        self._client.close()
