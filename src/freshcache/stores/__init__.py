"""Stores, chosen by URL: ``memory://``, ``database://``, ``redis://`` / ``rediss://``,
``redis+sentinel://`` / ``rediss+sentinel://`` (a Redis store behind Sentinel), and
``redis+cluster://`` / ``rediss+cluster://`` (a Redis store on Redis Cluster).

Stores are created lazily on first use from ``FRESHCACHE`` and dropped when the setting
changes; nothing is opened at import time.

A store whose URL cannot be built (an unknown option, a value that is not a number, a database
alias that does not exist, a driver that is not installed) never raises where it is used: it
is replaced by an :class:`UnusableStore`, logged once at WARNING, and behaves like a store that
cannot be reached. What is cached in it is computed uncached, and its invalidations wait in
the invalidation log until a process that can build it applies them (so a store fixed later
holds nothing stale). ``manage.py check`` names the mistake (docs/checks.md).
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Collection, Sequence
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

from ..conf import get_settings, problems
from .base import Hit, Snapshot, Store, Stored, StoreFull, StoreUnavailable

__all__ = [
    "REDIS_SCHEMES",
    "SCHEMES",
    "Hit",
    "Snapshot",
    "Store",
    "StoreFull",
    "StoreUnavailable",
    "Stored",
    "UnusableStore",
    "all_stores",
    "from_url",
    "get_store",
    "known_options",
    "redacted",
    "reset",
    "unknown_options",
]

logger = logging.getLogger("freshcache")

#: The schemes of the Redis store: one server, the master a set of sentinels names, or a
#: Redis Cluster.
REDIS_SCHEMES = (
    "redis",
    "rediss",
    "redis+sentinel",
    "rediss+sentinel",
    "redis+cluster",
    "rediss+cluster",
)
SCHEMES = ("memory", "database", *REDIS_SCHEMES)

#: Options of the Redis client that a ``redis://`` URL may pass through to it. The others are
#: freshcache's to set (``socket_connect_timeout``, ``retry_on_timeout``,
#: ``health_check_interval``: the bounded waits of docs/internals.md) or would change the
#: replies it parses (``decode_responses``, ``protocol``).
REDIS_CLIENT_OPTIONS = (
    "db",
    "username",
    "password",
    "client_name",
    "max_connections",
    "socket_keepalive",
)
#: ... and, for ``rediss://``, the TLS options.
REDIS_TLS_OPTIONS = (
    "ssl_ca_certs",
    "ssl_ca_data",
    "ssl_ca_path",
    "ssl_cert_reqs",
    "ssl_certfile",
    "ssl_check_hostname",
    "ssl_ciphers",
    "ssl_keyfile",
    "ssl_min_version",
    "ssl_password",
)

#: Query options whose values are secrets: never shown (:func:`redacted`).
SECRET_OPTIONS = frozenset({"password", "sentinel_password", "ssl_password"})

_lock = threading.Lock()
_stores: dict[str, Store] = {}


def known_options(scheme: str) -> tuple[str, ...]:
    """The query options a URL of ``scheme`` understands, sorted (docs/settings.md)."""
    if scheme == "memory":
        return ("max_entries", "max_tags")
    if scheme == "database":
        return ("alias",)
    if scheme in REDIS_SCHEMES:
        from .redis_cluster import SCHEMES as CLUSTER_SCHEMES
        from .redis_options import _OPTION_NAMES
        from .redis_sentinel import SCHEMES as SENTINEL_SCHEMES
        from .redis_sentinel import SENTINEL_OPTIONS

        tls = REDIS_TLS_OPTIONS if scheme.startswith("rediss") else ()
        if scheme in SENTINEL_SCHEMES:  # the database number is in the path: /SERVICE/DB
            client = tuple(o for o in REDIS_CLIENT_OPTIONS if o != "db") + tls
            accepted = _accepted_by_driver(scheme, client)
            ours = _OPTION_NAMES - {"node_timeout"}  # Redis Cluster's
            return tuple(sorted({*ours, *SENTINEL_OPTIONS, *accepted}))
        if scheme in CLUSTER_SCHEMES:  # database 0 only
            client = tuple(o for o in REDIS_CLIENT_OPTIONS if o != "db") + tls
            return tuple(sorted({*_OPTION_NAMES, *_accepted_by_driver(scheme, client)}))
        client = REDIS_CLIENT_OPTIONS + tls
        ours = _OPTION_NAMES - {"node_timeout"}  # Redis Cluster's
        return tuple(sorted({*ours, *_accepted_by_driver(scheme, client)}))
    return ()


def _accepted_by_driver(scheme: str, options: tuple[str, ...]) -> tuple[str, ...]:
    """The ``options`` the installed redis package accepts (an older one lacks some, and an
    option it does not accept raises ``TypeError`` at the first connection, not before)."""
    try:
        from redis.connection import Connection, ConnectionPool, SSLConnection
    except ImportError:
        return options  # reported as freshcache.E003; the option names are not the problem
    accepted: set[str] = set()
    for cls in (ConnectionPool, SSLConnection if scheme.startswith("rediss") else Connection):
        for klass in cls.__mro__:
            if (init := vars(klass).get("__init__")) is not None:
                accepted.update(inspect.signature(init).parameters)
    return tuple(o for o in options if o in accepted)


def unknown_options(url: str) -> list[str]:
    """The query options of ``url`` that its store does not understand, in URL order."""
    parts = urlsplit(url)
    known = set(known_options(parts.scheme))
    names = [name for name, _ in parse_qsl(parts.query, keep_blank_values=True)]
    return [name for name in dict.fromkeys(names) if name not in known]


def redacted(url: str) -> str:
    """``url`` without its password, for messages and logs (a URL that does not parse is shown
    by its scheme only: it may hold a password anywhere)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url.partition("://")[0] + "://(not shown: it does not parse)"
    secret = any(n in SECRET_OPTIONS for n, _ in parse_qsl(parts.query, keep_blank_values=True))
    if password is None and not secret:
        return url
    if secret:
        hidden = [
            (name, "***" if name in SECRET_OPTIONS else value)
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
        ]
        parts = parts._replace(query=urlencode(hidden, safe="*"))
    if password is not None:
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    return urlunsplit(parts)


def from_url(name: str, url: str) -> Store:
    """Build a store from its URL (no connection is made until it is used).

    Raise ``ImproperlyConfigured`` for an unknown scheme, an unknown, repeated or empty option
    or an unknown database alias, ``ValueError`` for an option value the store cannot use,
    ``ImportError`` when the Redis driver is missing.
    """
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise ImproperlyConfigured(
            f"FRESHCACHE store {name!r} has URL {redacted(url)!r} with unknown scheme "
            f"{scheme!r}; use one of: {', '.join(s + '://' for s in SCHEMES)}"
        )
    unknown = unknown_options(url)
    refusal = near_cache_refusal(scheme, unknown)
    if refusal:
        raise ImproperlyConfigured(
            f"FRESHCACHE store {name!r} has URL {redacted(url)!r}: {refusal}"
        )
    pairs = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    names = [option for option, _ in pairs]
    repeated = sorted({option for option in names if names.count(option) > 1})
    blank = [option for option, value in pairs if not value and option in known_options(scheme)]
    if repeated or blank:
        what = f"option(s) given twice: {', '.join(repeated)}" if repeated else ""
        what += "; " if repeated and blank else ""
        what += f"option(s) without a value: {', '.join(blank)}" if blank else ""
        raise ImproperlyConfigured(f"FRESHCACHE store {name!r} has URL {redacted(url)!r}: {what}")
    if unknown:
        raise ImproperlyConfigured(
            f"FRESHCACHE store {name!r} has URL {redacted(url)!r} with unknown option(s) "
            f"{', '.join(unknown)}; {scheme}:// understands: {', '.join(known_options(scheme))}"
        )
    settings = get_settings()
    if scheme == "memory":
        from .memory import MemoryStore

        return MemoryStore(name, url)
    if scheme == "database":
        from .database import DatabaseStore

        alias = database_alias(url)
        if alias not in django_settings.DATABASES:
            raise ImproperlyConfigured(
                f"FRESHCACHE store {name!r} uses database alias {alias!r}, which is not in "
                "DATABASES"
            )
        return DatabaseStore(name, url)
    from .redis import RedisStore
    from .redis_cluster import SCHEMES as CLUSTER_SCHEMES
    from .redis_shards import ShardedRedisStore

    store_class = ShardedRedisStore if scheme in CLUSTER_SCHEMES else RedisStore
    return store_class(
        name,
        url,
        prefix=settings.key_prefix,
        socket_timeout=settings.socket_timeout,
        connect_timeout=settings.connect_timeout,
        breaker_seconds=settings.breaker_seconds,
        timeout=settings.timeout,
    ).near()


def near_cache_refusal(scheme: str, unknown: list[str]) -> str | None:
    """Why a ``memory://`` or ``database://`` URL asking for a near cache is refused (``None``
    when it does not ask)."""
    if not {"near_cache", "near_heartbeat"} & set(unknown):
        return None
    if scheme not in ("memory", "database"):
        return None
    why = (
        "lives in the process already."
        if scheme == "memory"
        else "has no invalidation channel a write can wait on (PostgreSQL's NOTIFY reaches other "
        'processes after the COMMIT returns); see docs/internals.md, "The near cache".'
    )
    return f"a near cache is a Redis store option. A {scheme}:// store {why}"


def database_alias(url: str) -> str:
    """The database alias a ``database://`` URL names (``default`` when it names none)."""
    try:
        return parse_qs(urlsplit(url).query).get("alias", ["default"])[0]
    except ValueError:  # a URL that does not parse: reported as freshcache.E005
        return "default"


class UnusableStore(Store):
    """Stands in for a store whose URL cannot be built: it behaves as if it could not be
    reached. Lookups and bumps raise :class:`StoreUnavailable` (computations run uncached; a
    bump's log row waits for a process that can apply it), and nothing is stored."""

    blocking = False

    def __init__(self, name: str, url: str, error: str) -> None:
        super().__init__(name, url)
        self.error = error

    def _unavailable(self) -> StoreUnavailable:
        return StoreUnavailable(f"store {self.name!r} cannot be built: {self.error}")

    def lookup(self, key: str) -> Hit | Snapshot:
        raise self._unavailable()

    def begin(self) -> Snapshot:
        raise self._unavailable()

    def set(
        self,
        key: str,
        payload: bytes,
        tags: Collection[str],
        snapshot: Snapshot,
        timeout: float | None = None,
    ) -> bool:
        raise self._unavailable()

    def bump(self, tags: Collection[str], marks: Collection[int] = ()) -> None:
        raise self._unavailable()

    def apply(
        self, batch: Sequence[tuple[int, Collection[str]]], bumped: list[int] | None = None
    ) -> int:
        raise self._unavailable()

    def clear(self) -> None:
        raise self._unavailable()

    def __repr__(self) -> str:
        return f"<UnusableStore {self.name!r} {redacted(self.url)!r}: {self.error}>"


def _build(name: str, url: str) -> Store:
    try:
        return from_url(name, url)
    except Exception as exc:
        # Never a 500 for a settings mistake: the system checks report it (docs/checks.md).
        error = f"{type(exc).__name__}: {exc}" if isinstance(exc, TypeError) else str(exc)
        logger.warning(
            "freshcache: store %r (%s) cannot be built, so what is cached in it is computed "
            "uncached until the settings are fixed (manage.py check names the problem): %s",
            name,
            redacted(url),
            error,
        )
        return UnusableStore(name, url, error)


def _metered(store: Store) -> Store:
    """``store``, its calls timed while ``METRICS`` is on (``metrics/stores.py``)."""
    if not get_settings().metrics:
        return store
    from .. import metrics

    if not metrics.available():
        return store  # manage.py check reports it (freshcache.E023)
    from ..metrics.stores import MeteredStore

    return MeteredStore(store)


def get_store(name: str | None = None) -> Store:
    """Return the store named ``name`` (``"default"`` when omitted), creating it on first use.

    A store whose URL cannot be built is an :class:`UnusableStore` (see the module docstring).
    A name that ``FRESHCACHE['STORES']`` does not have raises ``ImproperlyConfigured``, unless
    ``FRESHCACHE`` has mistakes (it may have lost that name): then it is unusable too.
    """
    name = name or "default"
    store = _stores.get(name)
    if store is not None:
        return store
    with _lock:
        store = _stores.get(name)
        if store is None:
            urls = get_settings().stores
            if name in urls:
                store = _metered(_build(name, urls[name]))
            elif problems():
                store = UnusableStore(name, "", "FRESHCACHE has errors")
            else:
                raise ImproperlyConfigured(
                    f"No freshcache store named {name!r}; FRESHCACHE['STORES'] has: "
                    f"{', '.join(sorted(urls))}"
                )
            _stores[name] = store
    return store


def all_stores() -> list[Store]:
    """Every configured store (an invalidation is sent to each of them)."""
    return [get_store(name) for name in get_settings().stores]


def reset() -> None:
    """Forget every store (called when ``FRESHCACHE`` changes)."""
    with _lock:
        stores = list(_stores.values())
        _stores.clear()
    for store in stores:
        store.close()
