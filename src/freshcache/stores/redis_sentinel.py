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

A failover that leaves the old master answering (``SENTINEL FAILOVER``, a master that hung and
came back) is covered by :class:`MasterWatch` and the hold ``lua/fence.lua`` puts on bumps on a
new master: see docs/scaling.md, "Leaving the old master", and its limits.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any
from urllib.parse import SplitResult, parse_qs, parse_qsl, unquote, urlencode

__all__ = [
    "DEFAULT_SENTINEL_PORT",
    "SCHEMES",
    "SENTINEL_OPTIONS",
    "MasterWatch",
    "own_client",
    "sentinel_client",
    "sentinel_setup",
]

logger = logging.getLogger("freshcache.stores.redis")

#: The URL schemes of a store behind Redis Sentinel.
SCHEMES = ("redis+sentinel", "rediss+sentinel")
#: Options of a sentinel URL that are the sentinels' (the others are the servers').
SENTINEL_OPTIONS = ("sentinel_check", "sentinel_password", "sentinel_username")
#: Default seconds between two questions to the sentinels (``sentinel_check``).
DEFAULT_CHECK = 0.5
DEFAULT_SENTINEL_PORT = 26379


def _sentinels(netloc: str) -> list[tuple[str, int]]:
    hosts = netloc.rpartition("@")[2]
    found: list[tuple[str, int]] = []
    for part in hosts.split(","):
        part = part.strip()
        if part.startswith("["):  # IPv6: [::1] or [::1]:26380
            host, _, rest = part[1:].partition("]")
            colon, port = rest[:1], rest[1:]
            if rest and colon != ":":
                raise ValueError(f"a sentinel URL names its sentinels as host:port, not {part!r}")
        else:
            host, colon, port = part.rpartition(":") if ":" in part else (part, "", "")
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
    path = [unquote(p) for p in parts.path.split("/")[1:]]
    if path and not path[-1] and len(path) > 1:
        path.pop()  # a trailing slash: /SERVICE/ or /SERVICE/DB/
    if not path or not path[0] or len(path) > 2:
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
    from redis.backoff import NoBackoff
    from redis.connection import parse_url
    from redis.retry import Retry

    sentinels, service, db = parse(parts)
    query = parse_qsl(parts.query, keep_blank_values=True)
    auth = ("sentinel_password", "sentinel_username")
    sentinel_auth = {k.removeprefix("sentinel_"): v for k, v in query if k in auth}
    rest = urlencode([(k, v) for k, v in query if k not in SENTINEL_OPTIONS and k != "db"])
    userinfo = parts.netloc.rpartition("@")[0]
    # redis-py's own parser turns the options into the types it wants (ints, booleans).
    kwargs = parse_url(f"redis://{userinfo + '@' if userinfo else ''}sentinel/{db}?{rest}")
    for server_only in ("host", "port", "path", "connection_class"):
        kwargs.pop(server_only, None)
    if parts.scheme.startswith("rediss"):
        kwargs["ssl"] = True
    # The sentinels' connections wait as little as the servers' do: no retries (redis-py's
    # default retries with backoff held a request ~13 s when the sentinels were unreachable).
    asking = {k: v for k, v in connection.items() if k.startswith("socket_")}
    asking.update(retry=Retry(NoBackoff(), 0), **sentinel_auth)
    manager = _manager_class()(sentinels, sentinel_kwargs=asking)
    client: Any = manager.master_for(service, redis_class=redis.Redis, **kwargs, **connection)
    client._freshcache_sentinel = (manager, service, {**kwargs, **connection})
    return client


def sentinel_setup(
    parts: SplitResult, rest: str, connection: dict[str, Any]
) -> tuple[Any, MasterWatch, int]:
    """``(client, watch, hold_ms)`` for a ``redis+sentinel://`` URL's ``parts`` (``rest``: its
    query without freshcache's own options): the client, its :class:`MasterWatch`, and how
    long bumps wait on a new master (milliseconds). Raise ``ValueError`` for a bad URL."""
    check = parse_qs(parts.query).get("sentinel_check", [str(DEFAULT_CHECK)])[-1]
    interval = float(check)
    if not 0.01 <= interval <= 60:  # also NaN and infinity
        raise ValueError("sentinel_check must be a number of seconds from 0.01 to 60")
    client = sentinel_client(parts._replace(query=rest), **connection)
    # Readers trust their last answer for 2 intervals; a bump on a new master waits that long
    # after its epoch started, and a little more (docs/scaling.md).
    return client, MasterWatch(client, interval), int((2 * interval + 0.1) * 1000)


def _manager_class() -> Any:
    import redis
    from redis.sentinel import MasterNotFoundError, Sentinel

    class NewestSentinel(Sentinel):
        """Asks every sentinel and follows the newest configuration (the highest
        ``config-epoch``): right after a failover, a sentinel that has not heard of it yet
        still names the old master. Errors name each sentinel by its address, in one line."""

        def discover_master(self, service_name: str) -> tuple[str, int]:
            best: tuple[int, str, int] | None = None
            failures = []
            for sentinel in self.sentinels:
                where = "{host}:{port}".format(**sentinel.connection_pool.connection_kwargs)
                try:
                    state = sentinel.sentinel_master(service_name)
                except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                    failures.append(f"{where} {type(exc).__name__}")
                    continue
                except redis.ResponseError as exc:  # not a service it monitors
                    failures.append(f"{where} {str(exc)[:80]}")
                    continue
                if not self.check_master_state(state, service_name):
                    failures.append(f"{where} names no healthy master")
                    continue
                epoch = int(state.get("config-epoch") or 0)
                if best is None or epoch > best[0]:
                    best = (epoch, str(state["ip"]), int(state["port"]))
            if best is None:
                raise MasterNotFoundError(
                    f"no master for {service_name!r} from the sentinels ({'; '.join(failures)})"
                )
            return best[1], best[2]

    return NewestSentinel


class MasterWatch:
    """Keeps a process's idea of the master current: a daemon thread asks the sentinels every
    ``interval`` seconds and, when they name another server, closes every connection of the
    store (in use or not: a command on one fails, and is a bypass), so the next ones go to
    the new master and are fenced there.

    :meth:`current` says whether the last answer is less than ``2 * interval`` seconds old;
    the store serves nothing from Redis or its near cache otherwise (a bypass). Bumps on a new
    master wait that long after its epoch started (``lua/fence.lua``'s hold), so a write that
    returns after a failover finds every process's reads on the new master (docs/scaling.md).
    """

    def __init__(self, client: Any, interval: float) -> None:
        self.interval = interval
        self._pools = [client.connection_pool]
        self._lock = threading.Lock()
        self._address: Any = None
        self._checked = 0.0  # monotonic time the last successful check *started*
        self._attempted = -1e9  # ... and the last check, successful or not
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, client: Any) -> None:
        """Close ``client``'s connections too when the master changes (the near cache's)."""
        self._pools.append(client.connection_pool)

    def current(self) -> bool:
        # Until a first answer, asked here at most once per interval (the thread asks too):
        # unreachable sentinels cost one request their timeouts, not every request.
        if not self._checked and time.monotonic() - self._attempted >= self.interval:
            self.check()
        self._ensure_thread()
        return time.monotonic() - self._checked < 2 * self.interval

    def check(self) -> None:
        import redis

        started = self._attempted = time.monotonic()
        try:
            address = self._pools[0].get_master_address()
        except (redis.RedisError, OSError):
            return
        with self._lock:
            changed = self._address is not None and address != self._address
            self._address = address
            self._checked = max(self._checked, started)
        if changed:
            logger.warning("freshcache: the sentinels name a new master, %s:%s", *address)
            for pool in self._pools:
                pool.disconnect(inuse_connections=True)

    def _ensure_thread(self) -> None:
        if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(
                target=self._run, name="freshcache-sentinel-watch", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while not self._closed.wait(self.interval):
            self.check()

    def close(self) -> None:
        self._closed.set()


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
