"""Redis Sentinel: the Redis store's client when its URL names sentinels instead of a server.

``redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/SERVICE[/DB][?options]``
(``rediss+sentinel://`` for TLS to the servers). The hosts are the sentinels (port 26379 when
omitted); ``SERVICE`` is the master's name in their configuration (``sentinel monitor SERVICE
…``); ``DB`` the database number (0). The user and password are the Redis servers' (``AUTH``);
``sentinel_username`` and ``sentinel_password`` are the sentinels' own, when they ask for one.

The client is redis-py's (``redis.sentinel.Sentinel.master_for``): each new connection asks
the sentinels for the master's address, and a connection to a server that is no longer the
master fails (``READONLY``) and is made again to the promoted one. Nothing is home-made here.

Why a failover never serves an entry that a lost bump invalidated: replication is asynchronous,
so a promoted replica may lack the last bumps its master acknowledged (their writes returned).
Every new connection runs the fence (``lua/fence.lua``) first: the promoted replica's run id is
not the one the epoch was started on (the server key, replicated from the old master, holds the
old master's), so the first connection to it starts a new epoch, and every entry of the old
one misses. A failover therefore costs one miss per entry, never a stale hit
(``tests/test_sentinel.py`` makes a replica miss a bump, kills the master, and checks). The
replication offset is not needed: the run id changes at every promotion, whatever the offset.

Limits (Sentinel's own; https://redis.io/docs/latest/operate/oss_and_stack/management/sentinel/):
a master cut off from the sentinels but not from some clients keeps accepting their writes
until it learns it was replaced; bumps made there in that window are lost with it. Set
``min-replicas-to-write 1`` and ``min-replicas-max-lag`` on the servers to bound that window.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode

__all__ = ["DEFAULT_SENTINEL_PORT", "SCHEMES", "SENTINEL_OPTIONS", "own_client", "sentinel_client"]

#: The URL schemes of a store behind Redis Sentinel.
SCHEMES = ("redis+sentinel", "rediss+sentinel")
#: Options of a sentinel URL that are the sentinels' (the others are the servers').
SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")
DEFAULT_SENTINEL_PORT = 26379


def _sentinels(netloc: str) -> list[tuple[str, int]]:
    hosts = netloc.rpartition("@")[2]
    found: list[tuple[str, int]] = []
    for part in hosts.split(","):
        host, colon, port = part.strip().rpartition(":") if ":" in part else (part, "", "")
        host = host.strip("[]")
        if not host:
            raise ValueError(f"a sentinel URL names its sentinels as host:port, not {part!r}")
        if colon and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"sentinel port must be a number from 1 to 65535, not {port!r}")
        found.append((host, int(port) if colon else DEFAULT_SENTINEL_PORT))
    return found


def parse(parts: SplitResult) -> tuple[list[tuple[str, int]], str, int]:
    """``(sentinels, service, db)`` from a ``redis+sentinel://`` URL's parts.

    Raise ``ValueError`` when the service is missing or the database is not a number.
    """
    sentinels = _sentinels(parts.netloc)
    path = [unquote(p) for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise ValueError(
            "a sentinel URL names the master's service after the hosts: "
            "redis+sentinel://host:26379,host:26380/SERVICE[/DB]"
        )
    db = path[1] if len(path) == 2 else "0"
    if not (db.isascii() and db.isdigit()):
        raise ValueError(f"the database number must be a number, not {db!r}")
    return sentinels, path[0], int(db)


def sentinel_client(parts: SplitResult, **connection: Any) -> Any:
    """A ``redis.Redis`` that talks to the master the sentinels name; ``connection``: the
    keyword arguments of each connection (timeouts, ``redis_connect_func``).

    Raise ``ValueError`` for a URL that does not name sentinels and a service.
    """
    import redis
    from redis.connection import parse_url
    from redis.sentinel import Sentinel

    sentinels, service, db = parse(parts)
    query = parse_qsl(parts.query, keep_blank_values=True)
    sentinel_auth = {k.removeprefix("sentinel_"): v for k, v in query if k in SENTINEL_OPTIONS}
    rest = urlencode([(k, v) for k, v in query if k not in SENTINEL_OPTIONS and k != "db"])
    userinfo = parts.netloc.rpartition("@")[0]
    # redis-py's own parser turns the options into the types it wants (ints, booleans).
    kwargs = parse_url(f"redis://{userinfo + '@' if userinfo else ''}sentinel/{db}?{rest}")
    for server_only in ("host", "port", "path", "connection_class"):
        kwargs.pop(server_only, None)
    if parts.scheme.startswith("rediss"):
        kwargs["ssl"] = True
    timeouts = {k: v for k, v in connection.items() if k.startswith("socket_")}
    manager = Sentinel(sentinels, sentinel_kwargs={**timeouts, **sentinel_auth})
    client: Any = manager.master_for(service, redis_class=redis.Redis, **kwargs, **connection)
    client._freshcache_sentinel = (manager, service, {**kwargs, **connection})
    return client


def own_client(client: Any) -> Any:
    """A client with the same target and options as ``client`` but connections of its own
    (the near cache's subscription holds one for good)."""
    import redis

    sentinel = getattr(client, "_freshcache_sentinel", None)
    if sentinel is not None:
        manager, service, kwargs = sentinel
        return manager.master_for(service, redis_class=redis.Redis, **kwargs)
    pool = client.connection_pool
    return redis.Redis(
        connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class, **pool.connection_kwargs
        )
    )
