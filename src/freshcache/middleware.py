"""``CacheMiddleware`` and ``OutcomeMiddleware``: see ``freshcache.http.middleware``."""

from __future__ import annotations

from .http.middleware import CacheMiddleware, OutcomeMiddleware

__all__ = ["CacheMiddleware", "OutcomeMiddleware"]
