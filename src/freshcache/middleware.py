"""``freshcache.middleware.CacheMiddleware``: see ``freshcache.http.middleware``."""

from __future__ import annotations

from .http.middleware import CacheMiddleware

__all__ = ["CacheMiddleware"]
