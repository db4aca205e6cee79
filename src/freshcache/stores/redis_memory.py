"""How the Redis store meets a Redis that bounds its memory (``maxmemory``).

freshcache writes three kinds of keys that grow with traffic: entries and tag versions, which
expire (``TIMEOUT``, see ``lua/set.lua``), and marks, which expire after ten minutes. The four
position keys (epoch, sequence, its copy, the server's run id) never expire. So:

* ``volatile-lru``, ``volatile-lfu``, ``volatile-ttl``, ``volatile-random`` can evict every key
  that grows, and never a position key: the recommended policies (while ``TIMEOUT`` is set);
* ``allkeys-*`` can evict anything; evicting a position key starts a new epoch (every entry
  misses once), never a stale hit;
* ``noeviction`` refuses writes once ``maxmemory`` is reached: Redis answers ``OOM`` errors.
  freshcache then stores nothing (reason ``store full``) and keeps serving hits; bumps fail too,
  and wait in the invalidation log (processes read nothing from the store meanwhile).

The system check ``freshcache.W006`` warns about the cases that cannot evict what freshcache
writes (docs/checks.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["MemoryConfig", "memory_config", "out_of_memory"]


@dataclass(frozen=True, slots=True)
class MemoryConfig:
    """``maxmemory`` (bytes; 0: no limit) and ``maxmemory-policy`` of a Redis server."""

    maxmemory: int
    policy: str


def memory_config(client: Any) -> MemoryConfig | None:
    """Ask ``client`` (a ``redis.Redis``) for its memory limit and policy; None if it cannot
    say (``CONFIG`` disabled or renamed, as on many managed services; a proxy; the server
    unreachable). Never raises."""
    try:
        found = client.config_get("maxmemory*")
        maxmemory = int(found["maxmemory"])
        policy = found["maxmemory-policy"]
        if isinstance(policy, bytes):
            policy = policy.decode()
        return MemoryConfig(maxmemory, str(policy))
    except Exception:  # a check must never raise: any failure means "unknown"
        return None


def out_of_memory(exc: BaseException) -> bool:
    """True if ``exc`` is Redis refusing a write at ``maxmemory`` (``noeviction``).

    Redis answers ``-OOM command not allowed when used memory > 'maxmemory'``, also from inside
    a script (Redis 7 keeps the error code); redis-py raises it as ``OutOfMemoryError`` or, in
    older versions and for scripts, as a ``ResponseError`` with that text.
    """
    return type(exc).__name__ == "OutOfMemoryError" or "OOM command not allowed" in str(exc)
