"""Test-only hook points between the steps of the freshness protocol.

The core calls :func:`run` at each named point; nothing is registered in production, so the
cost is one dict lookup. Tests register callables (usually ``threading.Event`` waits) with
:func:`freshcache.testing.hook` to force an exact interleaving of a computation and a write:

* ``"after_snapshot"``  the sequence position was read; the computation has not started;
* ``"after_compute"``   the value was computed; it has not been stored;
* ``"before_bump"``     an invalidation is about to reach the stores;
* ``"before_shadow_render"``  shadow mode is about to render a sampled hit again (its thread).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["POINTS", "registered", "run"]

POINTS = ("after_snapshot", "after_compute", "before_bump", "before_shadow_render")

registered: dict[str, Callable[..., Any]] = {}


def run(point: str, **context: Any) -> None:
    """Call the hook registered for ``point``, if any."""
    if registered:
        fn = registered.get(point)
        if fn is not None:
            fn(**context)
