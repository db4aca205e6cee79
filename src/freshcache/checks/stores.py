"""The system checks of each store (its URL, and its server when one answers) and of Django's
``CACHES`` beside them.

A store's URL is checked in order, and only its first error is reported (an unknown scheme
makes its options meaningless): freshcache.E002, E014, E004, E005, E003. The warnings follow
when ``FRESHCACHE`` has no error: W001 (memory:// in production), W002 (Redis unreachable),
W011 (a Redis user the server's ACL refuses what freshcache needs), W006 (a Redis memory
limit freshcache's keys cannot be evicted under), W010 (a cluster's node timeout), and W005 (a
process-local ``CACHES`` backend while a store is shared).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings as django_settings
from django.core.checks import CheckMessage, Error, Warning

from ..conf import did_you_mean

__all__ = ["check_django_caches", "check_store"]


def check_store(name: str, url: str, *, warn: bool) -> list[CheckMessage]:
    """Errors in a store's URL (the first one found); then, with ``warn``, its warnings."""
    from ..stores import (
        REDIS_SCHEMES,
        SCHEMES,
        database_alias,
        known_options,
        near_cache_refusal,
        redacted,
        unknown_options,
    )

    shown = redacted(url)
    try:
        scheme = urlsplit(url).scheme
        unknown_options(url)
    except ValueError as exc:
        return [
            Error(
                f"Store {name!r} has URL {shown!r}, which cannot be used: {exc}.",
                hint="Check the host, port and options; see docs/settings.md for store URLs. "
                "Quote special characters of a password ('[' is %5B).",
                id="freshcache.E005",
            )
        ]
    if scheme not in SCHEMES:
        return [
            Error(
                f"Store {name!r} has URL {shown!r} with unknown scheme {scheme!r}.",
                hint=(
                    "Use memory://, database://, redis://, rediss://, redis+sentinel:// or "
                    "redis+cluster://."
                ),
                id="freshcache.E002",
            )
        ]
    known = known_options(scheme)
    unknown = unknown_options(url)
    refusal = near_cache_refusal(scheme, unknown)
    if refusal:
        return [
            Error(
                f"Store {name!r} has URL {shown!r}: {refusal}",
                hint="Use a redis:// store for a near cache, or drop the option.",
                id="freshcache.E014",
            )
        ]
    if unknown:
        return [
            Error(
                f"Store {name!r} has URL {shown!r} with unknown option {option!r}"
                f"{did_you_mean(option, known)}.",
                hint=f"{scheme}:// understands: {', '.join(known)}. See docs/settings.md for "
                "store URLs.",
                id="freshcache.E014",
            )
            for option in unknown
        ]
    if scheme == "database" and (alias := database_alias(url)) not in django_settings.DATABASES:
        return [
            Error(
                f"Store {name!r} uses database alias {alias!r}, which is not in DATABASES"
                f"{did_you_mean(alias, django_settings.DATABASES)}.",
                hint="Name an alias from DATABASES: database://?alias=NAME.",
                id="freshcache.E004",
            )
        ]
    if (invalid := _construct(name, url)) is not None:
        return [invalid]
    if scheme in REDIS_SCHEMES:
        try:
            import redis  # noqa: F401
        except ImportError:
            return [
                Error(
                    f"Store {name!r} is a Redis URL but the redis package is not installed.",
                    hint="pip install 'django-freshcache[redis]'",
                    id="freshcache.E003",
                )
            ]
    if not warn:
        return []
    if scheme == "memory" and not django_settings.DEBUG:
        return [
            Warning(
                f"Store {name!r} is memory:// with DEBUG = False.",
                hint="The memory store lives in one process: writes made by other processes "
                "(other workers, manage.py shell) do not invalidate it. Use database:// or "
                "redis:// in production.",
                id="freshcache.W001",
            )
        ]
    if scheme in REDIS_SCHEMES:
        return _check_redis(name, shown)
    return []


def _construct(name: str, url: str) -> CheckMessage | None:
    """Build the store from its URL (no connection is made) to catch a malformed URL now.

    Without this, a bad port or option (``redis://host:port6379``, ``?socket_timeout=fast``)
    raised out of the check run, or only at the first cached call.
    """
    from ..stores import from_url, redacted

    try:
        store = from_url(name, url)
    except ImportError:
        return None  # reported as freshcache.E003
    except Exception as exc:
        return Error(
            f"Store {name!r} has URL {redacted(url)!r}, which cannot be used: {exc}.",
            hint="Check the host, port and options; see docs/settings.md for store URLs.",
            id="freshcache.E005",
        )
    store.close()
    return None


def _check_redis(name: str, shown: str) -> list[CheckMessage]:
    from ..stores import get_store
    from ..stores.redis import RedisStore
    from ..stores.redis_shards import ShardedRedisStore

    store = get_store(name)
    while hasattr(store, "inner"):  # behind a near cache, timed for metrics
        store = store.inner
    # A redis+cluster:// store is not a RedisStore but made of them: ping() asks every shard's
    # master, memory_config() the cluster (docs/scaling.md, "Redis Cluster").
    if not isinstance(store, (RedisStore, ShardedRedisStore)):
        return []
    if not store.ping():
        # A user refused the fence every new connection runs cannot connect at all (asked of
        # one shard only: every shard's attempt waits out the same unreachable nodes).
        refused = _check_permissions(name, shown, store, first_only=True)
        if refused:
            return refused
        return [
            Warning(
                f"Store {name!r} ({shown}) cannot be reached now.",
                hint="freshcache computes uncached while Redis is down; check the URL and that "
                "the server is running.",
                id="freshcache.W002",
            )
        ]
    found = _check_permissions(name, shown, store)
    if found:
        return found  # what follows reads CONFIG: a user refused scripts may be refused it too
    found = _check_eviction(name, shown, store)
    if isinstance(store, ShardedRedisStore):
        found += _check_node_timeout(name, shown, store.shards[0])
    return found


def _check_permissions(
    name: str, shown: str, store: Any, *, first_only: bool = False
) -> list[CheckMessage]:
    """freshcache.W011: the server's ACL refuses the store's user a command, key or channel
    that freshcache needs (``stores/redis_acl.py`` asks without running anything)."""
    from ..stores.redis_acl import refused

    lines: list[str] = []
    shards = getattr(store, "shards", [store])
    for shard in shards[:1] if first_only else shards:
        lines += [line for line in refused(shard) if line not in lines]
    if not lines:
        return []
    return [
        Warning(
            f"Store {name!r} ({shown}): the Redis user may not run what freshcache needs: "
            + "; ".join(lines),
            hint="Until it may, every script (or every bump) fails, and pages are computed "
            "uncached. Grant the commands, the store's keys and its channels: see "
            'docs/scaling.md, "Redis users (ACL)".',
            id="freshcache.W011",
        )
    ]


def _check_node_timeout(name: str, shown: str, shard: Any) -> list[CheckMessage]:
    """freshcache.W010: a ``redis+cluster://`` store's ``node_timeout`` is not the cluster's
    ``cluster-node-timeout`` (the quorum guard of ``lua/_cluster.lua`` needs it). Nothing when
    ``CONFIG`` cannot be read."""
    try:
        found = shard._client.config_get("cluster-node-timeout")
        actual = int(found["cluster-node-timeout"]) / 1000
    except Exception:  # CONFIG renamed or refused (managed services): nothing to compare
        return []
    if abs(actual - shard.node_timeout) < 0.001:
        return []
    effect = (
        "healthy masters refuse freshcache's scripts whenever a PONG is older than it"
        if actual > shard.node_timeout
        else "a master replaced after a shorter hang may answer before it learns it was"
    )
    return [
        Warning(
            f"Store {name!r} ({shown}) has node_timeout={shard.node_timeout:g} but the cluster's "
            f"cluster-node-timeout is {actual:g} s: {effect}.",
            hint=f"Add node_timeout={actual:g} to the store URL. See docs/scaling.md, "
            '"Redis Cluster".',
            id="freshcache.W010",
        )
    ]


#: Why an eviction policy cannot bound what freshcache writes (freshcache.W006).
_EVICTION_HINTS = {
    "noeviction": "Once full, Redis answers writes with OOM errors: freshcache then stores "
    "nothing (pages are served uncached, reason 'store full') and invalidations fail, so "
    "processes read nothing from the store until memory is freed. Set maxmemory-policy "
    "volatile-lru (freshcache gives entries and tag versions a TTL) or allkeys-lru.",
    "volatile": "volatile-* policies evict only keys with a TTL, and with TIMEOUT = None "
    "freshcache's entries and tag versions have none: once full, Redis refuses writes. Set "
    "TIMEOUT (the default is 86400 seconds) or use maxmemory-policy allkeys-lru.",
}


def _check_eviction(name: str, shown: str, store: Any) -> list[CheckMessage]:
    """freshcache.W006: Redis has a memory limit its eviction policy cannot keep with what
    freshcache writes. Nothing when CONFIG cannot be read (managed services disable it)."""
    from ..conf import get_settings

    config = store.memory_config()
    if config is None or config.maxmemory == 0:
        return []  # no limit: entries still expire after TIMEOUT
    where = f"Store {name!r} ({shown}): Redis has maxmemory {config.maxmemory}"
    if config.policy == "noeviction":
        why = f"{where} and maxmemory-policy 'noeviction': it refuses writes once full."
        return [Warning(why, hint=_EVICTION_HINTS["noeviction"], id="freshcache.W006")]
    if config.policy.startswith("volatile-") and get_settings().timeout is None:
        why = (
            f"{where} and maxmemory-policy {config.policy!r}, which cannot evict freshcache's "
            "keys: TIMEOUT is None, so they have no TTL."
        )
        return [Warning(why, hint=_EVICTION_HINTS["volatile"], id="freshcache.W006")]
    return []


def check_django_caches(settings: Any) -> list[CheckMessage]:
    """freshcache.W005: a process-local ``CACHES`` backend while a freshcache store is shared."""
    from django.core.cache.backends.dummy import DummyCache
    from django.core.cache.backends.filebased import FileBasedCache
    from django.core.cache.backends.locmem import LocMemCache
    from django.utils.module_loading import import_string

    shared = sorted(n for n, url in settings.stores.items() if not url.startswith("memory:"))
    if not shared:
        return []
    found: list[CheckMessage] = []
    for alias, params in sorted(getattr(django_settings, "CACHES", {}).items()):
        declared = settings.django_caches.get(alias)
        try:
            backend = import_string(params["BACKEND"])
        except Exception:
            continue  # Django reports a backend that cannot be imported
        if not isinstance(backend, type) or issubclass(backend, DummyCache):
            continue  # DummyCache never returns a value: nothing read from it goes stale
        local = issubclass(backend, LocMemCache | FileBasedCache)
        if declared == "shared" or not (local or declared == "local"):
            continue
        found.append(
            Warning(
                f"CACHES[{alias!r}] uses {backend.__name__}, which each process keeps for "
                f"itself, while the freshcache store {shared[0]!r} is shared.",
                hint="Cached pages and functions that read this cache (cache.get(), e.g. in a "
                "template tag) are served but never stored: a write in another process cannot "
                "reach this process's copy. Use a shared backend in CACHES (Redis, Memcached, "
                "database), or, if its values are the same in every process, declare it: "
                f"FRESHCACHE['DJANGO_CACHES'] = {{{alias!r}: 'shared'}}.",
                id="freshcache.W005",
            )
        )
    return found
