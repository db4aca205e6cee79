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

import contextvars
import inspect
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from asgiref.sync import async_to_sync
from django.db import connections

from .. import events, hooks

__all__ = ["assert_invalidates", "assert_still_cached", "hook"]

#: How long (seconds) the assertions probe again while the cache bypasses the target.
SETTLE_SECONDS = 5.0


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

    def probe(self) -> tuple[str, str]:
        """Run the target once: what the cache did (``"hit"``, ``"miss"``, ``"bypass"``, or
        ``"uncached"`` for a page answered with no lookup) and a description for messages."""
        seen: list[events.Event] = []

        def listen(event: object) -> None:
            # The probe's own events only, a live server's threads may report meanwhile; the
            # mark is a context variable, so an async view (run by the test client in
            # asgiref's loop thread) carries it.
            if isinstance(event, events.Event) and _probing.get() is seen:
                seen.append(event)

        events.subscribe(listen)
        mark = _probing.set(seen)
        try:
            if isinstance(self.target, str):
                from django.test import Client

                response = Client().get(self.target)
                fallback = f"status {response.status_code}, no lookup"
            else:
                result = self.target.outcome(*self.args, **self.kwargs)
                if inspect.isawaitable(result):  # an async @cached function
                    async_to_sync(_awaited)(result)
                fallback = "no lookup"
        finally:
            _probing.reset(mark)
            events.unsubscribe(listen)
        kind = "page" if isinstance(self.target, str) else "function"
        own = [event for event in seen if event.kind == kind]
        if own:
            # The target's own event comes last: an inner computation reports before its caller.
            return own[-1].outcome, _detail(own[-1])
        if not seen:
            return "uncached", fallback
        # A page that is not cached itself but made of cached fragments: a hit when all of them
        # were hits.
        for state in ("miss", "bypass"):
            found = [event for event in seen if event.outcome == state]
            if found:
                return state, f"{found[0].kind} {found[0].name}: {_detail(found[0])}"
        return "hit", "hit"

    def settled(self) -> tuple[str, str]:
        """:meth:`probe`, again while the cache bypasses, for up to :data:`SETTLE_SECONDS`.

        A bypass says nothing about the entry: the cache may refuse a hit for a moment (the
        relay is applying a batch of the invalidation log, a store is unreachable), and a test
        must neither pass nor fail on that moment."""
        deadline = time.monotonic() + SETTLE_SECONDS
        pause = 0.01
        while True:
            state, detail = self.probe()
            if state != "bypass" or time.monotonic() >= deadline:
                return state, detail
            time.sleep(pause)
            pause = min(pause * 2, 0.25)

    def warm(self) -> None:
        detail = ""
        for _ in range(3):  # a miss stores, so the next probe is a hit
            state, detail = self.settled()
            if state == "hit":
                return
            if state == "bypass":
                break  # bypassed for SETTLE_SECONDS already: probing again would not help
        raise AssertionError(f"{self.label} could not be cached before the block: {detail}")


#: Set while a probe runs: the list its events go to (see ``_Target.probe``).
_probing: contextvars.ContextVar[list[events.Event] | None] = contextvars.ContextVar(
    "freshcache_probing", default=None
)


async def _awaited(result: Any) -> Any:
    return await result


def _detail(event: events.Event) -> str:
    return event.reason or ("stored" if event.stored else event.outcome)


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
    state, detail = subject.settled()
    if state == "hit":
        raise AssertionError(
            f"expected the block to invalidate {subject.label}, "
            "but it was still served from the cache"
        )
    if state == "bypass":
        raise AssertionError(
            f"could not tell whether the block invalidated {subject.label}: the cache was "
            f"bypassed for {SETTLE_SECONDS:g} s after it ({detail})"
        )


@contextmanager
def assert_still_cached(target: Any, *args: Any, **kwargs: Any) -> Iterator[None]:
    """Assert that the block leaves ``target`` cached: a hit before it and after it."""
    _require_commits("assert_still_cached")
    subject = _Target(target, args, kwargs)
    subject.warm()
    yield
    state, detail = subject.settled()
    if state == "bypass":
        raise AssertionError(
            f"could not tell whether {subject.label} stayed cached: the cache was bypassed "
            f"for {SETTLE_SECONDS:g} s after the block ({detail})"
        )
    if state != "hit":
        raise AssertionError(
            f"expected {subject.label} to stay cached, but the block invalidated it ({detail})"
        )
