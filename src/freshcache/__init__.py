"""freshcache: always-fresh caching for Django.

Pages, fragments and function results are cached until the data they were built from changes,
then invalidated exactly. See the README for a quick start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "Outcome",
    "cache_page",
    "cached",
    "depends_on",
    "invalidate",
    "page_outcome",
    "register",
    "register_placeholder",
    "request_outcomes",
    "stats",
    "store",
]

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .core import Outcome
    from .functions import cached, depends_on
    from .http import cache_page, register_placeholder
    from .invalidation import invalidate
    from .outcome import page_outcome, request_outcomes
    from .registry import register
    from .stores import Store


def __getattr__(name: str) -> Any:
    # Imported lazily so that ``import freshcache`` (e.g. from settings.py) touches no Django
    # machinery before settings are configured.
    if name in ("cached", "depends_on"):
        from . import functions

        return getattr(functions, name)
    if name == "invalidate":
        from .invalidation import invalidate

        return invalidate
    if name in ("cache_page", "register_placeholder"):
        from . import http

        return getattr(http, name)
    if name == "register":
        from .registry import register

        return register
    if name in ("page_outcome", "request_outcomes"):
        from . import outcome

        return getattr(outcome, name)
    if name == "Outcome":
        from .core import Outcome

        return Outcome
    raise AttributeError(f"module 'freshcache' has no attribute {name!r}")


def store(name: str | None = None) -> Store:
    """Return the configured store named ``name`` (``"default"`` when omitted).

    >>> freshcache.store().clear()   # every cached entry misses from now on
    """
    from .stores import get_store

    return get_store(name)


def stats() -> dict[str, int]:
    """Return this process's counters: hits, misses, stores, stores skipped, bumps, errors.

    >>> freshcache.stats()["hits"]
    0
    """
    from . import counters

    return counters.snapshot()
