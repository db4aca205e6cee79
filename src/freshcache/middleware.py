"""``CacheMiddleware`` and ``OutcomeMiddleware`` (see ``freshcache.http.middleware``) and
``EarlyHitMiddleware`` (see ``freshcache.http.early``)."""

from __future__ import annotations

from .http.early import EarlyHitMiddleware
from .http.middleware import CacheMiddleware, OutcomeMiddleware

__all__ = ["CacheMiddleware", "EarlyHitMiddleware", "OutcomeMiddleware"]
