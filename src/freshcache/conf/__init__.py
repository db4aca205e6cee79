"""The ``FRESHCACHE`` settings dict, read into a frozen dataclass.

Settings are read lazily through :func:`get_settings`, cached, and re-read whenever Django's
``setting_changed`` signal fires for ``FRESHCACHE`` (so ``override_settings`` works in tests).
Nothing is decided at import time.

A wrong value never raises where the settings are used (a request, a write, the relay): that
would turn every cached page into a 500. :func:`read` records each mistake as a
:class:`Problem` (the system checks report each under its id, with a hint: docs/checks.md),
puts the default in its place (in a list, leaves the bad entry out), and turns caching off.
:func:`get_settings` then logs one WARNING per configuration. Every valid setting still applies,
so writes keep invalidating the stores and the processes that read them stay fresh.

How each setting is read and validated is in ``readers.py``; this module holds the defaults,
the settings' shape, and the cached accessor.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, fields, replace
from typing import Any

from django.conf import settings as django_settings

from .edge import EdgeSettings, read_edge

# MAX_LEASE_SECONDS and closest live with their readers; `X as X` keeps them importable from
# here, as before the split (stores/database.py imports MAX_LEASE_SECONDS).
from .readers import MAX_LEASE_SECONDS as MAX_LEASE_SECONDS
from .readers import (
    Problem,
    Reader,
    did_you_mean,
    read_browser_cache_control,
    read_cache_statuses,
    read_django_caches,
    read_key_prefix,
    read_lease,
    read_log_database,
    read_never_cache_paths,
    read_stores,
)
from .readers import closest as closest
from .replicas import read_read_replicas
from .shadow import ShadowSettings, read_shadow

__all__ = [
    "DEFAULTS",
    "EdgeSettings",
    "FreshcacheSettings",
    "Problem",
    "ShadowSettings",
    "get_settings",
    "problems",
    "read",
]

logger = logging.getLogger("freshcache")

#: Every setting with its default, in one literal (documented in docs/settings.md).
DEFAULTS: dict[str, Any] = {
    "ENABLED": True,
    "STORE": "memory://",
    "STORES": {},
    "KEY_PREFIX": "fc",
    "TIMEOUT": 86400,
    "MAX_ENTRY_SIZE": 1048576,
    "SOCKET_TIMEOUT": 0.25,
    "CONNECT_TIMEOUT": 0.25,
    "BREAKER_SECONDS": 2.0,
    "EXCLUDE": ("sessions", "migrations", "admin.LogEntry", "contenttypes", "freshcache"),
    "VOLATILE_FIELDS": (),
    "PREDICATE_FIELDS": (),
    "HEADER": None,
    "BROWSER_CACHE_CONTROL": "no-cache",
    "MAX_QUERY_PARAMS": 50,
    "MAX_QUERY_LENGTH": 2048,
    "NEVER_CACHE_PATHS": (),
    "CACHE_STATUSES": (200,),
    "LOG_DATABASE": "default",
    "RELAY": True,
    "RELAY_POLL_SECONDS": 1.0,
    "INSTALL_TRIGGERS": True,
    "LEASE_SECONDS": 10.0,
    "LEASE_WAIT_SECONDS": 5.0,
    "DJANGO_CACHES": {},
    "EDGE": {},
    "METRICS": False,
    "JOURNAL": True,
    "READ_REPLICAS": {},
    "REPLICA_WAIT_SECONDS": 0.1,
    "SHADOW": None,
    "EARLY_HITS_TRUSTED_MIDDLEWARE": (),
}


@dataclass(frozen=True)
class FreshcacheSettings:
    """The validated ``FRESHCACHE`` settings. Read them with :func:`get_settings`."""

    enabled: bool = True
    #: Store URLs by name; ``"default"`` always exists.
    stores: dict[str, str] = field(default_factory=lambda: {"default": "memory://"})
    key_prefix: str = "fc"
    #: Seconds an entry (and the tag versions it records) is kept at most; ``None``: forever.
    timeout: float | None = 86400
    #: Bytes: an encoded value larger than this is served but not stored; ``None``: no limit.
    max_entry_size: int | None = 1048576
    socket_timeout: float = 0.25
    connect_timeout: float = 0.25
    breaker_seconds: float = 2.0
    exclude: tuple[str, ...] = ()
    volatile_fields: tuple[str, ...] = ()
    predicate_fields: tuple[str, ...] = ()
    header: bool | None = None
    #: ``""``: no ``Cache-Control`` is added.
    browser_cache_control: str = "no-cache"
    max_query_params: int = 50
    max_query_length: int = 2048
    never_cache_paths: tuple[str, ...] = ()
    cache_statuses: tuple[int, ...] = (200,)
    #: The database holding the invalidation log (``None``: no log).
    log_database: str | None = "default"
    relay: bool = True
    relay_poll_seconds: float = 1.0
    install_triggers: bool = True
    #: Single flight: how long a lease lasts at most (its holder died: others go ahead after it).
    lease_seconds: float = 10.0
    #: Single flight: how long a request waits for another's computation before its own.
    lease_wait_seconds: float = 5.0
    #: ``CACHES`` aliases whose locality is declared: ``"shared"`` or ``"local"``.
    django_caches: dict[str, str] = field(default_factory=dict)
    #: Surrogate keys for edge caches (docs/edge.md); off unless ``EDGE["KEYS"]`` names one.
    edge: EdgeSettings = field(default_factory=EdgeSettings)
    #: Prometheus metrics (docs/observability.md); needs the ``prometheus`` extra.
    metrics: bool = False
    #: The journal read by ``manage.py freshcache why|stats|doctor`` (``journal.py``).
    journal: bool = True
    #: Middleware the project vouches for below ``EarlyHitMiddleware`` (``http/early.py``).
    early_hits_trusted_middleware: tuple[str, ...] = ()
    #: Read replicas: replica alias → the alias of its primary (``conf/replicas.py``).
    read_replicas: dict[str, str] = field(default_factory=dict)
    #: How long a computation's first read of a replica waits for it to catch up.
    replica_wait_seconds: float = 0.1
    #: Shadow mode (docs/observability.md): sampled page hits re-rendered and compared.
    shadow: ShadowSettings = field(default_factory=ShadowSettings)


#: The kinds of :class:`Problem` and the check id each is reported under (docs/checks.md).
KINDS = {
    "settings": "freshcache.E001",  # not a dict
    "unknown": "freshcache.E001",  # an unknown key
    "type": "freshcache.E006",
    "switch": "freshcache.E007",
    "seconds": "freshcache.E008",
    "count": "freshcache.E009",
    "status": "freshcache.E010",
    "error_status": "freshcache.E011",
    "path": "freshcache.E012",
    "alias": "freshcache.E013",
    "size": "freshcache.E019",
    "lease": "freshcache.E020",
    "cache": "freshcache.E021",
    "edge": "freshcache.E022",
    "shadow": "freshcache.E024",
    "replicas": "freshcache.E025",
}


def read(raw: Any) -> tuple[FreshcacheSettings, tuple[Problem, ...]]:
    """Read a ``FRESHCACHE`` value: the settings to run with, and every mistake found.

    With a mistake, the settings have caching off (``enabled=False``) and defaults in place of
    the wrong values; everything valid is kept (see the module docstring).
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problem = Problem(
            "FRESHCACHE", "settings", f"FRESHCACHE must be a dict, not {type(raw).__name__}"
        )
        return replace(read({})[0], enabled=False), (problem,)
    reader = Reader(raw, DEFAULTS)
    for name in sorted(set(map(str, raw)) - set(DEFAULTS)):
        reader.problems.append(
            Problem(name, "unknown", f"Unknown FRESHCACHE setting {name!r}"
                    f"{did_you_mean(name, DEFAULTS)}")
        )  # fmt: skip
    settings = FreshcacheSettings(
        enabled=reader.switch("ENABLED"),
        stores=read_stores(reader),
        key_prefix=read_key_prefix(reader),
        timeout=reader.seconds("TIMEOUT", allow_none=True),
        max_entry_size=reader.size("MAX_ENTRY_SIZE"),
        socket_timeout=reader.seconds("SOCKET_TIMEOUT"),
        connect_timeout=reader.seconds("CONNECT_TIMEOUT"),
        breaker_seconds=reader.seconds("BREAKER_SECONDS", zero=True),
        exclude=reader.strings("EXCLUDE"),
        volatile_fields=reader.strings("VOLATILE_FIELDS"),
        predicate_fields=reader.strings("PREDICATE_FIELDS"),
        header=reader.switch("HEADER", allow_none=True),
        browser_cache_control=read_browser_cache_control(reader),
        max_query_params=reader.count("MAX_QUERY_PARAMS"),
        max_query_length=reader.count("MAX_QUERY_LENGTH"),
        never_cache_paths=read_never_cache_paths(reader),
        cache_statuses=read_cache_statuses(reader),
        log_database=read_log_database(reader),
        relay=reader.switch("RELAY"),
        relay_poll_seconds=reader.seconds("RELAY_POLL_SECONDS"),
        install_triggers=reader.switch("INSTALL_TRIGGERS"),
        lease_seconds=read_lease(reader, "LEASE_SECONDS"),
        lease_wait_seconds=read_lease(reader, "LEASE_WAIT_SECONDS"),
        django_caches=read_django_caches(reader),
        edge=read_edge(reader),
        metrics=reader.switch("METRICS"),
        journal=reader.switch("JOURNAL"),
        read_replicas=read_read_replicas(reader),
        replica_wait_seconds=reader.seconds("REPLICA_WAIT_SECONDS", zero=True),
        shadow=read_shadow(reader),
        early_hits_trusted_middleware=reader.strings("EARLY_HITS_TRUSTED_MIDDLEWARE"),
    )
    if reader.problems:
        settings = replace(settings, enabled=False)
    return settings, tuple(reader.problems)


_lock = threading.Lock()
_current: tuple[FreshcacheSettings, tuple[Problem, ...]] | None = None


def _read_current() -> tuple[FreshcacheSettings, tuple[Problem, ...]]:
    global _current
    current = _current
    if current is None:
        with _lock:
            current = _current
            if current is None:
                current = _current = read(getattr(django_settings, "FRESHCACHE", None))
                if current[1]:
                    logger.warning(
                        "freshcache: caching is off because FRESHCACHE has %d error(s) "
                        "(manage.py check lists them): %s",
                        len(current[1]),
                        "; ".join(p.message for p in current[1]),
                    )
    return current


def get_settings() -> FreshcacheSettings:
    """Return the current settings (cached; reset when ``FRESHCACHE`` changes). Never raises:
    with a mistake in ``FRESHCACHE`` caching is off (see :func:`read`)."""
    return _read_current()[0]


def problems() -> tuple[Problem, ...]:
    """The mistakes in the current ``FRESHCACHE`` (reported by the system checks)."""
    return _read_current()[1]


def reset() -> None:
    """Forget the settings read (the next call reads ``FRESHCACHE`` again)."""
    global _current
    with _lock:
        _current = None


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "FRESHCACHE":
        reset()
        from .. import log, stores
        from ..log.relay import get_relay

        stores.reset()
        log.reset()
        get_relay().settings_changed()


# The dataclass field names, for docs and checks.
FIELD_NAMES = tuple(f.name for f in fields(FreshcacheSettings))
