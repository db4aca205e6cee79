"""Stores, chosen by URL: ``memory://``, ``database://``, ``redis://`` / ``rediss://``.

Stores are created lazily on first use from ``FRESHCACHE`` and dropped when the setting
changes; nothing is opened at import time.
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from ..conf import get_settings
from .base import Hit, Snapshot, Store, StoreUnavailable

__all__ = [
    "SCHEMES",
    "Hit",
    "Snapshot",
    "Store",
    "StoreUnavailable",
    "all_stores",
    "from_url",
    "get_store",
    "reset",
]

SCHEMES = ("memory", "database", "redis", "rediss")

_lock = threading.Lock()
_stores: dict[str, Store] = {}


def from_url(name: str, url: str) -> Store:
    """Build a store from its URL (no connection is made until it is used)."""
    scheme = urlsplit(url).scheme
    settings = get_settings()
    if scheme == "memory":
        from .memory import MemoryStore

        return MemoryStore(name, url)
    if scheme == "database":
        from .database import DatabaseStore

        return DatabaseStore(name, url)
    if scheme in ("redis", "rediss"):
        from .redis import RedisStore

        return RedisStore(
            name,
            url,
            prefix=settings.key_prefix,
            socket_timeout=settings.socket_timeout,
            connect_timeout=settings.connect_timeout,
            breaker_seconds=settings.breaker_seconds,
        )
    raise ImproperlyConfigured(
        f"FRESHCACHE store {name!r} has URL {url!r} with unknown scheme {scheme!r}; "
        f"use one of: {', '.join(s + '://' for s in SCHEMES)}"
    )


def get_store(name: str | None = None) -> Store:
    """Return the store named ``name`` (``"default"`` when omitted), creating it on first use."""
    name = name or "default"
    store = _stores.get(name)
    if store is not None:
        return store
    with _lock:
        store = _stores.get(name)
        if store is None:
            urls = get_settings().stores
            if name not in urls:
                raise ImproperlyConfigured(
                    f"No freshcache store named {name!r}; FRESHCACHE['STORES'] has: "
                    f"{', '.join(sorted(urls))}"
                )
            store = _stores[name] = from_url(name, urls[name])
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
