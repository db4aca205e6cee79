"""The query options of a Redis store URL that are freshcache's own (the others are the Redis
client's, passed through): read, checked, and split from the rest (docs/settings.md)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qs, urlencode

from .near import MIN_NEAR_CACHE, parse_size

__all__ = ["CLUSTER_HOLD_MS", "CLUSTER_MAX_HEARTBEAT", "Options", "read_options"]

_OPTION_NAMES = {
    "prefix",
    "socket_timeout",
    "connect_timeout",
    "breaker_seconds",
    "near_cache",
    "near_heartbeat",
    "node_timeout",
}

#: Milliseconds a bump on a Redis Cluster master that took over a shard waits before its
#: writer returns (``lua/_cluster.lua``'s ``FC_HOLD_MS``; the same number there).
CLUSTER_HOLD_MS = 1000
#: The longest ``near_heartbeat`` on Redis Cluster, in seconds: a near cache still subscribed to
#: a replaced master must have stopped serving before that hold ends, which takes three
#: heartbeats after the last one it read, read up to one heartbeat late (4 x 0.2 s < 1 s).
CLUSTER_MAX_HEARTBEAT = 0.2


@dataclass(frozen=True)
class Options:
    """freshcache's options of one Redis URL (seconds, bytes), and ``rest``: the query without
    them, quoted again (a value holding ``&``, ``=`` or ``+``, a password, stays one value)."""

    prefix: str | None
    socket_timeout: float
    connect_timeout: float
    breaker_seconds: float
    near_cache: int
    near_heartbeat: float
    #: Redis Cluster: the cluster's ``cluster-node-timeout``, in seconds (``lua/_cluster.lua``).
    node_timeout: float
    rest: str


def read_options(
    parts: SplitResult, *, socket_timeout: float, connect_timeout: float, breaker_seconds: float
) -> Options:
    """The options of a Redis URL's ``parts``, the keyword arguments standing for those it does
    not give. Raise ``ValueError`` for a value out of range (NaN and infinity included) or a
    near cache under 64 KB."""
    query = parse_qs(parts.query)
    given = {k: v[-1] for k, v in query.items() if k in _OPTION_NAMES}
    for option in ("socket_timeout", "connect_timeout", "breaker_seconds", "near_heartbeat",
                   "node_timeout"):  # fmt: skip
        if option in given:
            try:
                float(given[option])
            except ValueError:
                raise ValueError(
                    f"{option} must be a number of seconds, not {given[option]!r} (for "
                    f"example {option}=0.5)"
                ) from None
    socket_timeout = float(given.get("socket_timeout", socket_timeout))
    connect_timeout = float(given.get("connect_timeout", connect_timeout))
    breaker_seconds = float(given.get("breaker_seconds", breaker_seconds))
    near_cache = parse_size(given.get("near_cache", "0"))
    node_timeout = float(given.get("node_timeout", 15))  # Redis's default cluster-node-timeout
    if 0 < near_cache < MIN_NEAR_CACHE:
        raise ValueError(
            f"near_cache must be 0 (none) or at least 64kb, not {near_cache} bytes: each "
            "entry counts 2 KB of overhead plus twice its payload"
        )
    # A fifth of the socket timeout, at most 0.05 s by default: the channel is known unhealthy
    # before a bump that cannot reach Redis gives up and its writer returns.
    near_heartbeat = float(
        given.get("near_heartbeat", max(0.001, min(0.05, socket_timeout / 5)))
    )
    for option, seconds, least in (
        ("socket_timeout", socket_timeout, 1e-6),
        ("connect_timeout", connect_timeout, 1e-6),
        ("breaker_seconds", breaker_seconds, 0.0),  # 0: no breaker
        ("node_timeout", node_timeout, 0.001),
    ):
        if not least <= seconds <= 3600:
            span = "from 0 to 3600" if least == 0 else "above 0 and at most 3600"
            raise ValueError(f"{option} must be a number of seconds {span}")
    if near_cache and not 0.001 <= near_heartbeat <= 3600:
        raise ValueError("near_heartbeat must be a number of seconds from 0.001 to 3600")
    if near_cache and parts.scheme.endswith("+cluster") and near_heartbeat > CLUSTER_MAX_HEARTBEAT:
        raise ValueError(
            f"near_heartbeat must be at most {CLUSTER_MAX_HEARTBEAT} s on redis+cluster://, not "
            f"{near_heartbeat:g}: after a failover, bumps wait {CLUSTER_HOLD_MS} ms for near "
            'caches that still listen to the old master to stop (docs/scaling.md, "Redis '
            'Cluster")'
        )
    return Options(
        prefix=given.get("prefix"),
        socket_timeout=socket_timeout,
        connect_timeout=connect_timeout,
        breaker_seconds=breaker_seconds,
        near_cache=near_cache,
        near_heartbeat=near_heartbeat,
        node_timeout=node_timeout,
        rest=urlencode([(k, v[-1]) for k, v in query.items() if k not in _OPTION_NAMES]),
    )
