"""Helpers for tests: what a write invalidates, and forcing interleavings of the protocol.

``assert_invalidates`` and ``assert_still_cached`` check, in your own test suite, that a block of
code invalidates (or leaves alone) a cached function call or a cached page::

    from freshcache.testing import assert_invalidates, assert_still_cached

    def test_new_comment_refreshes_its_post_only(transactional_db):
        with assert_invalidates(render_comments, post7), assert_still_cached(render_comments, p8):
            Comment.objects.create(post=post7, author_name="ann", body="hi")

        with assert_invalidates("/post/hello/"), assert_still_cached("/post/other/"):
            Comment.objects.create(post=hello, author_name="bob", body="yo")

A target is a ``@cached`` function with its arguments, or a URL path served by a cached view
(requested with Django's test ``Client``). Both helpers need writes that really commit: use
``TransactionTestCase`` (pytest-django: ``transactional_db``), because a ``TestCase`` transaction
never commits, so its bumps never happen.

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

from django.db import connections

from .. import hooks

__all__ = ["assert_invalidates", "assert_still_cached", "hook"]


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


class _Target:
    """A cached function call or a cached page, which can be warmed and probed."""

    def __init__(self, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if isinstance(target, str):
            if not target.startswith("/") or args or kwargs:
                raise TypeError(f"a page target is a URL path such as '/post/7/', not {target!r}")
            self.label = f"the page {target}"
        elif callable(getattr(target, "outcome", None)):
            name = getattr(target, "__qualname__", repr(target))
            self.label = f"{name}{_call_text(args, kwargs)}"
        else:
            raise TypeError(
                f"a target is a @cached function (with its arguments) or a URL path, not {target!r}"
            )
        self.target, self.args, self.kwargs = target, args, kwargs

    def probe(self) -> tuple[bool, str]:
        """Run the target once: (served from the cache?, why not if it was not)."""
        if isinstance(self.target, str):
            from django.test import Client

            from .. import counters

            # A page hit is the one lookup of the request succeeding: hits go up, and no
            # miss or bypass (of the page or of a fragment inside it) happens.
            before = counters.snapshot()
            response = Client().get(self.target)
            after = counters.snapshot()
            delta = {k: after[k] - before[k] for k in ("hits", "misses", "bypasses")}
            hit = delta["hits"] > 0 and delta["misses"] == 0 and delta["bypasses"] == 0
            state = response.get("X-Freshcache", f"status {response.status_code}, counters {delta}")
            return hit, state
        outcome = self.target.outcome(*self.args, **self.kwargs)
        return outcome.hit, outcome.reason or ("stored" if outcome.stored else "not stored")

    def warm(self) -> None:
        reason = ""
        for _ in range(3):
            hit, reason = self.probe()
            if hit:
                return
        raise AssertionError(f"{self.label} could not be cached before the block: {reason}")


def _call_text(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return "(" + ", ".join(parts) + ")"


def _require_commits(helper: str) -> None:
    for conn in connections.all(initialized_only=True):
        if conn.in_atomic_block:
            raise RuntimeError(
                f"{helper}() runs inside a transaction that will not commit (a TestCase?), so "
                "no invalidation can happen: use TransactionTestCase (pytest-django: "
                "transactional_db)."
            )


@contextmanager
def assert_invalidates(target: Any, *args: Any, **kwargs: Any) -> Iterator[None]:
    """Assert that the block invalidates ``target``: cached before it, a miss after it.

    ``target`` is a ``@cached`` function followed by its arguments, or a URL path.
    """
    _require_commits("assert_invalidates")
    subject = _Target(target, args, kwargs)
    subject.warm()
    yield
    hit, _ = subject.probe()
    if hit:
        raise AssertionError(
            f"expected the block to invalidate {subject.label}, "
            "but it was still served from the cache"
        )


@contextmanager
def assert_still_cached(target: Any, *args: Any, **kwargs: Any) -> Iterator[None]:
    """Assert that the block leaves ``target`` cached: a hit before it and after it."""
    _require_commits("assert_still_cached")
    subject = _Target(target, args, kwargs)
    subject.warm()
    yield
    hit, reason = subject.probe()
    if not hit:
        raise AssertionError(
            f"expected {subject.label} to stay cached, but the block invalidated it ({reason})"
        )
