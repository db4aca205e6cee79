"""Helpers for tests: forcing interleavings of the freshness protocol.

``hook(point, fn)`` registers ``fn`` at one of the protocol's hook points for the duration of a
``with`` block (see :mod:`freshcache.hooks`)::

    from freshcache.testing import hook

    with hook("after_snapshot", lambda **_: writer_done.wait(5)):
        render()      # pauses after reading the snapshot, before reading any data
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .. import hooks

__all__ = ["hook"]


@contextmanager
def hook(point: str, fn: Callable[..., Any]) -> Iterator[None]:
    """Run ``fn(**context)`` at hook ``point`` while the block runs."""
    if point not in hooks.POINTS:
        raise ValueError(f"unknown hook point {point!r}; known: {', '.join(hooks.POINTS)}")
    previous = hooks.registered.get(point)
    hooks.registered[point] = fn
    try:
        yield
    finally:
        if previous is None:
            hooks.registered.pop(point, None)
        else:
            hooks.registered[point] = previous
