"""The edge: surrogate keys for Varnish and CDNs (issue 12; docs/edge.md).

* ``keys.py``: how a tag is named at the edge (:func:`edge_key`) and what a bump of it purges
  (:func:`purge_keys`); one encoding for headers and purges.
* ``rollup.py``: which keys label a page so that they fit its edge's header (:func:`label`).
* ``vendors.py``: the edges, their headers and documented limits (:data:`EDGES`).
* ``response.py``: the HTTP shell: labels page responses, or marks them uncacheable for the
  edge. The page cache (``http/serve.py``) calls it; it is not imported here, so that the
  modules above stay free of HTTP and of the settings (the purgers use them).
* ``purgers/``: each edge's purge API behind one contract (``purgers/base.py``); ``queue.py``:
  the durable purge queue the relay fills (``freshcache_purge``); ``worker.py``: the thread that
  sends it. Not imported here either: the relay imports ``queue``, the settings ``purgers``.
"""

from __future__ import annotations

from .keys import CATCH_ALL_KEY, KEY_MAX_LENGTH, ancestors, edge_key, parent, purge_keys
from .rollup import Budget, label
from .vendors import EDGES, Edge

__all__ = [
    "CATCH_ALL_KEY",
    "EDGES",
    "KEY_MAX_LENGTH",
    "Budget",
    "Edge",
    "ancestors",
    "edge_key",
    "label",
    "parent",
    "purge_keys",
]
