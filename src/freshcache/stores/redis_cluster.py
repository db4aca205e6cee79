"""Redis Cluster: the Redis store's client when its URL names cluster nodes.

``redis+cluster://[[user]:password@]host[:port][,host[:port]…][?options]`` (``rediss+cluster://``
for TLS). The hosts are some of the cluster's nodes (port 6379 when omitted): the client asks
them for the slot map and follows it (``MOVED``, ``ASK``) as the cluster changes. The client is
redis-py's (``redis.cluster.RedisCluster``); nothing is home-made here. A cluster has only
database 0: a path naming another is refused.

Where the keys live: every key of a store carries one hash tag (``{prefix}``, ``stores/redis.py``),
so all of them hash to one slot, served by one master and its replicas; each operation stays one
atomic script. A cluster therefore serves a freshcache store as a single Redis does, with
the cluster's failover; it does not spread one store's entries over the masters yet
(docs/scaling.md, "Redis Cluster", says why and what spreading needs).

Why a failover never serves an entry that a lost bump invalidated: replication is asynchronous,
so a promoted replica may lack bumps its master acknowledged. On a single server the fence
(``lua/fence.lua``) runs once per new connection; a cluster client keeps connections to nodes
whose role changes under it (a connection opened to a replica to read the slot map is the one
used once that replica is promoted), so here the fence runs inside every script instead
(``lua/_cluster.lua``): the script compares the server's run id with the one the epoch was started
on, and starts a new epoch when they differ. Every entry of the old epoch then misses. It costs
the server one ``INFO server`` per script (about 5 µs).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import SplitResult, unquote

__all__ = [
    "DEFAULT_PORT",
    "SCHEMES",
    "ClusterScript",
    "LazyCluster",
    "cluster_client",
    "node_client",
    "nodes",
]

#: The URL schemes of a store on Redis Cluster.
SCHEMES = ("redis+cluster", "rediss+cluster")
DEFAULT_PORT = 6379


def nodes(parts: SplitResult) -> list[tuple[str, int]]:
    """The ``(host, port)`` pairs a ``redis+cluster://`` URL's ``parts`` name.

    Raise ``ValueError`` for a host without a name, a port that is not a number from 1 to
    65535, or a path naming a database other than 0 (a cluster has only database 0).
    """
    found: list[tuple[str, int]] = []
    for part in parts.netloc.rpartition("@")[2].split(","):
        part = part.strip()
        if part.startswith("["):  # IPv6: [::1] or [::1]:7000
            host, _, rest = part[1:].partition("]")
            colon, port = rest[:1], rest[1:]
            if rest and colon != ":":
                raise ValueError(f"a cluster URL names its nodes as host:port, not {part!r}")
        else:
            host, colon, port = part.rpartition(":") if ":" in part else (part, "", "")
        if not host:
            raise ValueError(f"a cluster URL names its nodes as host:port, not {part!r}")
        if colon and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"cluster node port must be a number from 1 to 65535, not {port!r}")
        found.append((host, int(port) if colon else DEFAULT_PORT))
    path = unquote(parts.path).strip("/")
    if path not in ("", "0"):
        raise ValueError(
            f"Redis Cluster has only database 0, and this URL names database {path!r}: "
            "redis+cluster://host:7000,host:7001 (no path, or /0)"
        )
    return found


class ClusterScript:
    """A Lua script run by its SHA1 (``EVALSHA``) on the node serving its keys' slot, and sent
    in full (``EVAL``, which caches it there) when that node does not know it yet: a promoted
    replica, a restarted node. redis-py's ``Script`` would load it on every master instead, and
    fail while any master of the cluster is down, even one serving other slots."""

    def __init__(self, client: Any, text: str) -> None:
        self.client = client
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()

    def __call__(self, keys: Sequence[str] = (), args: Sequence[Any] = ()) -> Any:
        from redis.exceptions import NoScriptError

        try:
            return self.client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return self.client.eval(self.text, len(keys), *keys, *args)


class LazyCluster:
    """A ``RedisCluster`` made at its first use and, after a failed attempt, at the next one.

    redis-py's client asks the nodes for the slot map as it is made, and raises if none
    answers: made in the store's constructor, a cluster that is down when a process starts
    would leave that process without its store for good. Attributes are the client's;
    a failure to reach any node is ``redis.ConnectionError`` (a bypass, like any outage).
    """

    def __init__(
        self,
        factory: Callable[[], Any],
        startup: Callable[[], Any] | None = None,
    ) -> None:
        self._factory = factory
        #: A ``redis.Redis`` on the first node the URL names (``manage.py check`` asks it what
        #: the ACL refuses when the cluster client itself cannot be made).
        self.startup = startup
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        found = self._client
        if found is None:
            from redis.exceptions import ConnectionError, RedisClusterException

            with self._lock:
                if self._client is None:
                    try:
                        self._client = self._factory()
                    except RedisClusterException as exc:
                        raise ConnectionError(str(exc)) from exc
                found = self._client
        return found

    def made(self) -> Any:
        """The client if it was made, else None (never tries to make it)."""
        return self._client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client(), name)

    def register_script(self, text: str) -> ClusterScript:
        return ClusterScript(self, text)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def cluster_client(parts: SplitResult, rest: str, **connection: Any) -> LazyCluster:
    """A ``redis.cluster.RedisCluster``, made at its first use (:class:`LazyCluster`), for
    a ``redis+cluster://`` URL's ``parts``; ``rest``: the query without freshcache's own options;
    ``connection``: the keyword arguments of each connection (timeouts). Raise ``ValueError``
    for a URL that does not name nodes.

    Waits stay bounded as on a single server: one retry (so that a command that meets a new
    slot map, ``MOVED`` or a connection closed by a failover, is sent once more to the node now
    serving the slot), no backoff.
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.cluster import ClusterNode, RedisCluster
    from redis.connection import parse_url
    from redis.retry import Retry

    startup = nodes(parts)  # a bad URL fails here, not at the first use
    userinfo = parts.netloc.rpartition("@")[0]
    # redis-py's own parser turns the options into the types it wants (ints, booleans).
    kwargs = parse_url(f"redis://{userinfo + '@' if userinfo else ''}node/0?{rest}")
    for per_node in ("host", "port", "path", "db", "connection_class"):
        kwargs.pop(per_node, None)
    if parts.scheme.startswith("rediss"):
        kwargs["ssl"] = True
    dropped = ("retry", "retry_on_timeout", "redis_connect_func")  # the cluster's own, below
    connection = {k: v for k, v in connection.items() if k not in dropped}
    return LazyCluster(
        lambda: RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in startup],
            retry=Retry(NoBackoff(), 1),
            # A slot of another store (or another application) left uncovered by a failed
            # master must not stop this store's slot from being served.
            require_full_coverage=False,
            **kwargs,
            **connection,
        ),
        lambda: redis.Redis(host=startup[0][0], port=startup[0][1], **kwargs, **connection),
    )


def node_client(cluster: Any, key: str, refresh: bool = False) -> Any:
    """A ``redis.Redis`` with a connection of its own to the master serving ``key``'s slot in
    ``cluster`` (a :class:`LazyCluster`), as the slot map says; with ``refresh``, the slot map
    is read again first (a subscription there failed: the slot may have moved). Raises the
    driver's error when no node answers."""
    import redis

    client = cluster.client() if isinstance(cluster, LazyCluster) else cluster
    if refresh:
        client.nodes_manager.initialize()
    pool = client.get_node_from_key(key).redis_connection.connection_pool
    return redis.Redis(
        connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class, **pool.connection_kwargs
        )
    )
