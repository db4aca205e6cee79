"""``@cached`` and ``depends_on``. The key of a call is built by :mod:`freshcache.arguments`.

A value is *settled* before its scope closes (issue 9, item 2): everything it will ever read is
read while the scope still collects tags, or the call fails. A QuerySet (any flavour) and a
``RawQuerySet`` are evaluated and handed back with their result cache filled; a lazy object is
evaluated and replaced by what it wraps; a manager, an iterator, a generator or an awaitable is
refused with a ``TypeError`` naming the fix. The value is then encoded (pickled) inside the scope
too, so whatever encoding evaluates (a QuerySet inside a dict) is read there; the core stores
those bytes. A ``lazy()`` promise stays lazy: it is evaluated anew at each use, never frozen.
Finally a computation that read the database and still depends on no tag is not stored: it read
only what capture cannot tie to a table, and nothing would ever invalidate it.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from asgiref.sync import sync_to_async
from django.core.exceptions import SynchronousOnlyOperation
from django.db import models
from django.db.models.manager import BaseManager
from django.db.models.query import RawQuerySet
from django.utils.functional import LazyObject, empty

from .arguments import arguments_key, simple_parameters
from .conf import get_settings
from .core import PICKLE, Codec, Outcome, afetch, fetch
from .inputs import note_inputs
from .invalidation import in_dirty_transaction
from .scope import Scope, add_tags, current_scope
from .tags import Taggable, tags_for

__all__ = ["cached", "depends_on"]

logger = logging.getLogger("freshcache")

#: ``Outcome.reason`` of a computation that read the database but depends on no tag.
UNTRACKED_READS = "read the database but depends on no tag"

P = ParamSpec("P")
R = TypeVar("R")


class _Settled:
    """A computed value and its encoding, both made while the computation's scope was open."""

    __slots__ = ("data", "error", "value")

    def __init__(self, value: Any) -> None:
        self.value = value
        self.data: bytes | None = None
        self.error: Exception | None = None


class _SettledCodec:
    """Hand the core the bytes encoded inside the scope; decode as ``codec`` does.

    The core encodes after the scope closed, where a read that encoding causes (pickling a
    QuerySet evaluates it) would add no tag. So this codec never encodes: a value that was not
    encoded inside its scope is refused, which the core reports as not stored.
    """

    def __init__(self, codec: Codec) -> None:
        self.codec = codec

    def dumps(self, value: Any) -> bytes:
        if isinstance(value, _Settled):
            if value.error is not None:
                raise value.error
            if value.data is not None:
                return value.data
        raise ValueError("it was not encoded while it was computed")

    def loads(self, data: bytes) -> Any:
        return self.codec.loads(data)


def _refuse_deferred(value: Any, name: str) -> None:
    """Raise ``TypeError`` for a value that can only read its data after it is returned."""
    if isinstance(value, BaseManager):
        model = value.model.__name__ if value.model is not None else "Model"
        what = f"a manager of {model}, which holds no rows"
        fix = "return its rows: `.all()` (a QuerySet is evaluated inside the call) or `list(...)`"
    elif isinstance(value, RawQuerySet):
        what = "a RawQuerySet, which cannot be stored with its rows"
        fix = "return `list(Model.objects.raw(...))`"
    elif isinstance(value, Iterator):  # generators, QuerySet.iterator(), map(), files...
        what = f"an iterator ({type(value).__name__}), which reads only when consumed, once"
        fix = "return a list: `return list(...)`"
    elif isinstance(value, AsyncIterator):
        what = f"an async iterator ({type(value).__name__}), which reads only when consumed"
        fix = "return a list: `return [x async for x in ...]`"
    elif inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()  # never handed on: spare the caller "coroutine was never awaited"
        what = f"an awaitable ({type(value).__name__}), which runs only when awaited"
        fix = "declare the function `async def` and `await` it"
    else:
        return
    raise TypeError(
        f"@cached {name}() returned {what}: its queries would run after the call, where "
        f"freshcache cannot see them, so nothing would ever invalidate the result. Instead, {fix}."
    )


def _target(value: Any, name: str) -> Any:
    """The value to settle: a (set up) lazy object's target; raise for what cannot be settled."""
    if isinstance(value, LazyObject):
        value = value._wrapped
    _refuse_deferred(value, name)
    return value


def _encodable(scope: Scope | None) -> bool:
    # The core's refusals known by now: encoding a value that will not be stored is wasted
    # work (caching disabled, a transaction that wrote, a computation already refused).
    return (
        scope is not None
        and scope.uncacheable is None
        and get_settings().enabled
        and not in_dirty_transaction()
    )


def _encode_into(settled: _Settled, codec: Codec) -> None:
    try:
        settled.data = codec.dumps(settled.value)
        settled.error = None
    except Exception as exc:  # reported by the core as "value cannot be encoded: ..."
        settled.error = exc


def _check_tags(scope: Scope | None, name: str) -> None:
    """Refuse a result that read the database yet depends on no tag: nothing would bump it."""
    if scope is None or not scope.reads or scope.tags or scope.uncacheable is not None:
        return
    if not get_settings().enabled:
        return  # nothing is stored: no refusal to report
    scope.refuse(UNTRACKED_READS)
    if name not in _warned:
        _warned.add(name)
        logger.warning(
            "freshcache: @cached %s() ran %d database queries but depends on no tag, so its "
            "results are not stored: every query read only tables freshcache does not track "
            "(FRESHCACHE['EXCLUDE'], raw SQL naming no table) or matched nothing without "
            "reaching the database. Name what it depends on with depends_on(...).",
            name,
            scope.reads,
        )


_warned: set[str] = set()


def _settle(value: Any, name: str, codec: Codec) -> _Settled:
    """Read everything ``value`` will read, and encode it, inside the open scope."""
    if isinstance(value, LazyObject) and value._wrapped is empty:
        value._setup()
    value = _target(value, name)
    if isinstance(value, models.QuerySet):
        # Evaluated here, its result cache filled: the caller still gets a QuerySet, and
        # iterating it (or a hit's copy of it) runs no query.
        len(value)
    settled = _Settled(value)
    scope = current_scope()
    if _encodable(scope):
        _encode_into(settled, codec)
    _check_tags(scope, name)
    return settled


async def _asettle(value: Any, name: str, codec: Codec) -> _Settled:
    """:func:`_settle` for ``async`` functions: database work runs off the event loop."""
    if isinstance(value, LazyObject) and value._wrapped is empty:
        await sync_to_async(value._setup)()
    value = _target(value, name)
    if isinstance(value, models.QuerySet) and value._result_cache is None:
        await sync_to_async(len)(value)
    settled = _Settled(value)
    scope = current_scope()
    if _encodable(scope):
        _encode_into(settled, codec)
        if isinstance(settled.error, SynchronousOnlyOperation):
            # Encoding evaluated something lazy (a QuerySet inside a dict): again, off the loop;
            # the scope is a ContextVar, so the reads there are still this computation's.
            await sync_to_async(_encode_into)(settled, codec)
    _check_tags(scope, name)
    return settled


def _unsettled(out: Outcome[Any]) -> Outcome[Any]:
    if type(out.value) is _Settled:
        return dataclasses.replace(out, value=out.value.value)
    return out


@overload
def cached(fn: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def cached(
    *,
    store: str | None = None,
    timeout: float | None = None,
    codec: Codec | None = None,
    name: str | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def cached(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    store: str | None = None,
    timeout: float | None = None,
    codec: Codec | None = None,
    name: str | None = None,
) -> Any:
    """Cache a function's result until any data it read changes.

    Works on plain and ``async`` functions, bare or with options::

        @cached
        def popular_posts(limit=10):
            return list(Post.objects.order_by("-view_count")[:limit])

        @cached(store="redis", timeout=3600)  # timeout only bounds memory
        async def forecast(city):
            depends_on(f"weather:{city}")
            return await fetch_forecast(city)

    The wrapped function gains ``outcome(*args, **kwargs)``, which returns the
    :class:`~freshcache.core.Outcome` (value, hit, stored, reason, tags) instead of the value.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        qualname = name or f"{func.__module__}.{func.__qualname__}"
        signature = inspect.signature(func)
        simple = simple_parameters(signature)  # once per function, not per call
        inner = codec or PICKLE
        settled_codec = _SettledCodec(inner)

        if inspect.iscoroutinefunction(func):

            async def aoutcome(*args: Any, **kwargs: Any) -> Outcome[Any]:
                key, arg_tags = arguments_key(qualname, signature, args, kwargs, simple)

                async def compute() -> Any:
                    add_tags(arg_tags)
                    note_inputs((*args, *kwargs.values()))
                    return await _asettle(await func(*args, **kwargs), qualname, inner)

                return _unsettled(
                    await afetch(
                        key,
                        compute,
                        store=store,
                        codec=settled_codec,
                        timeout=timeout,
                        kind="function",
                        name=qualname,
                    )
                )

            @functools.wraps(func)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                return (await aoutcome(*args, **kwargs)).value

            awrapper.outcome = aoutcome  # type: ignore[attr-defined]
            return awrapper

        def outcome(*args: Any, **kwargs: Any) -> Outcome[Any]:
            key, arg_tags = arguments_key(qualname, signature, args, kwargs, simple)

            def compute() -> Any:
                add_tags(arg_tags)
                note_inputs((*args, *kwargs.values()))
                return _settle(func(*args, **kwargs), qualname, inner)

            out = fetch(
                key,
                compute,
                store=store,
                codec=settled_codec,
                timeout=timeout,
                kind="function",
                name=qualname,
            )
            return _unsettled(out)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return outcome(*args, **kwargs).value

        wrapper.outcome = outcome  # type: ignore[attr-defined]
        return wrapper

    if fn is not None:
        return decorate(fn)
    return decorate


class depends_on:  # lower case: it is used like a function
    """Add tags to the cached computation that is running now.

    A model instance gives its instance tag, a model class its table tag, a string is a
    hand-named tag. Three forms::

        depends_on("weather:london")            # a call, inside a cached function

        @depends_on(Post)                       # a decorator: each call adds the tags
        def count_posts(): ...

        with depends_on(post):                  # a context manager
            ...

    Outside any cached computation it does nothing.
    """

    def __init__(self, *items: Taggable) -> None:
        self.tags = frozenset(tags_for(items))
        add_tags(self.tags)

    def __enter__(self) -> depends_on:
        add_tags(self.tags)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        tags = self.tags
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                add_tags(tags)
                return await func(*args, **kwargs)

            return awrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            add_tags(tags)
            return func(*args, **kwargs)

        return wrapper
