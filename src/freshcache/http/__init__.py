"""Pages over HTTP: ``cache_page``, the site-wide middleware, placeholders and their rules.

Read ``docs/pages.md`` for the user guide; ``serve.py`` states the protocol, ``guard/`` how
unkeyed request input is kept out of shared pages, ``keys.py`` what a page key covers.
"""

from __future__ import annotations

from .decorators import cache_page
from .guard import UncacheableWarning
from .keys import url_tag
from .middleware import CacheMiddleware
from .placeholders import placeholder, register_placeholder
from .shadow import shadow_exempt

__all__ = [
    "CacheMiddleware",
    "UncacheableWarning",
    "cache_page",
    "placeholder",
    "register_placeholder",
    "shadow_exempt",
    "url_tag",
]
