"""A django-debug-toolbar panel: ``"freshcache.contrib.debug_toolbar.FreshcachePanel"``.

Install the extra (``pip install 'django-freshcache[debug-toolbar]'``) and add the panel to
``DEBUG_TOOLBAR_PANELS``; see docs/observability.md. Importing this package imports
``debug_toolbar``, so nothing in freshcache imports it unless your settings name the panel.
"""

from __future__ import annotations

from .panel import FreshcachePanel

__all__ = ["FreshcachePanel"]
