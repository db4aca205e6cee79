"""Purgers: each edge's purge API behind one contract (``base.py``; docs/edge.md, "Purgers").

``FRESHCACHE["EDGE"]["PURGERS"]`` names them by ``BACKEND``: ``freshcache.edge.purgers.Varnish``,
``…Fastly``, ``…Cloudflare``, or a dotted path to a :class:`Purger` subclass of your own. The
SDKs are imported when a purge is sent, never here.
"""

from __future__ import annotations

from .base import REQUIRED, PurgeFailed, Purger, TokenBucket, backoff
from .cloudflare import Cloudflare
from .fastly import Fastly
from .varnish import Varnish

__all__ = ["REQUIRED", "Cloudflare", "Fastly", "PurgeFailed", "Purger", "TokenBucket", "Varnish",
           "backoff"]  # fmt: skip
