"""``@cached``, ``depends_on`` and the rules that turn call arguments into a key.

A key is the function's qualified name and its bound arguments (defaults applied, so ``f(1)``
and ``f(x=1)`` share an entry), each encoded with its type and length, so values of different
types or splits never collide (``("a", "bc")`` vs ``("ab", "c")``). A model instance argument
is keyed by its primary key *and* adds its instance tag: the function may read the instance's
fields without a query, so it depends on that row.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import functools
import inspect
import uuid
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from django.db import models

from .core import Codec, Outcome, afetch, fetch
from .scope import add_tags
from .tags import Taggable, instance_tag, tags_for

__all__ = ["cached", "depends_on"]

P = ParamSpec("P")
R = TypeVar("R")


class _Unkeyable(TypeError):
    pass


def _encode(value: Any, tags: set[str]) -> Iterator[str]:
    # Each part is "<type letter><length>:<text>": self-delimiting, so no two argument lists
    # encode to the same string.
    def part(letter: str, text: str) -> str:
        return f"{letter}{len(text)}:{text}"

    if value is None or isinstance(value, bool):
        yield part("n", repr(value))
    elif isinstance(value, int | float | decimal.Decimal | uuid.UUID | complex):
        yield part(type(value).__name__[0], repr(value))
    elif isinstance(value, str):
        yield part("s", value)
    elif isinstance(value, bytes):
        yield part("y", value.hex())
    elif isinstance(value, datetime.date | datetime.time | datetime.timedelta):
        yield part("d", f"{type(value).__name__}:{value!r}")
    elif isinstance(value, enum.Enum):
        yield part("e", f"{type(value).__module__}.{type(value).__qualname__}.{value.name}")
    elif isinstance(value, models.Model):
        if value.pk is None:
            raise _Unkeyable(f"unsaved {type(value).__name__} instance (it has no primary key)")
        tags.add(instance_tag(value, value._state.db))
        yield part("m", f"{value._meta.label_lower}:{value._state.db}:{value.pk!r}")
    elif isinstance(value, type) and issubclass(value, models.Model):
        yield part("c", value._meta.label_lower)
    elif isinstance(value, tuple | list):
        yield f"{'t' if isinstance(value, tuple) else 'l'}{len(value)}["
        for item in value:
            yield from _encode(item, tags)
        yield "]"
    elif isinstance(value, frozenset | set):
        items = sorted("".join(_encode(item, tags)) for item in value)
        yield f"S{len(items)}[" + "".join(items) + "]"
    elif isinstance(value, dict):
        pairs = sorted(
            "".join(_encode(k, tags)) + "".join(_encode(v, tags)) for k, v in value.items()
        )
        yield f"D{len(pairs)}[" + "".join(pairs) + "]"
    else:
        hint = ""
        if isinstance(value, models.QuerySet):
            hint = " (pass the values you filter on instead of a queryset)"
        raise _Unkeyable(f"a {type(value).__module__}.{type(value).__qualname__}{hint}")


def _simple_parameters(signature: inspect.Signature) -> tuple[tuple[str, ...], dict[str, Any]]:
    """Names and defaults when every parameter is plain positional-or-keyword, else ((), {})."""
    params = list(signature.parameters.values())
    if any(p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params):
        return (), {}
    defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    return tuple(p.name for p in params), defaults


def _bound_arguments(
    signature: inspect.Signature,
    simple: tuple[tuple[str, ...], dict[str, Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> list[tuple[str, Any]]:
    names, defaults = simple
    # The hit path: positional arguments only, to a function without *args/**kwargs.
    if names and not kwargs and len(args) <= len(names):
        rest = names[len(args) :]
        if all(n in defaults for n in rest):
            return [*zip(names, args, strict=False), *((n, defaults[n]) for n in rest)]
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return list(bound.arguments.items())


def _arguments_key(
    name: str,
    signature: inspect.Signature,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    simple: tuple[tuple[str, ...], dict[str, Any]] | None = None,
) -> tuple[str, set[str]]:
    if simple is None:
        simple = _simple_parameters(signature)
    tags: set[str] = set()
    parts = [f"fn:{name}("]
    for arg_name, value in _bound_arguments(signature, simple, args, kwargs):
        try:
            parts.extend(_encode(value, tags))
        except _Unkeyable as exc:
            raise TypeError(
                f"@cached {name}(): argument {arg_name!r} cannot be part of a cache key: it is "
                f"{exc}. Supported: None, bool, numbers, str, bytes, dates, UUID, Decimal, "
                "enums, model instances and classes, and tuples/lists/sets/dicts of these."
            ) from None
    parts.append(")")
    return "".join(parts), tags


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
        simple = _simple_parameters(signature)  # once per function, not per call

        if inspect.iscoroutinefunction(func):

            async def aoutcome(*args: Any, **kwargs: Any) -> Outcome[Any]:
                key, arg_tags = _arguments_key(qualname, signature, args, kwargs, simple)

                async def compute() -> Any:
                    add_tags(arg_tags)
                    return await func(*args, **kwargs)

                return await afetch(key, compute, store=store, codec=codec, timeout=timeout)

            @functools.wraps(func)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                return (await aoutcome(*args, **kwargs)).value

            awrapper.outcome = aoutcome  # type: ignore[attr-defined]
            return awrapper

        def outcome(*args: Any, **kwargs: Any) -> Outcome[Any]:
            key, arg_tags = _arguments_key(qualname, signature, args, kwargs, simple)

            def compute() -> Any:
                add_tags(arg_tags)
                return func(*args, **kwargs)

            return fetch(key, compute, store=store, codec=codec, timeout=timeout)

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
