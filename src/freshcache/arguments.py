"""The key of a ``@cached`` call: the function's name and its bound arguments.

Defaults are applied, so ``f(1)`` and ``f(x=1)`` share an entry. Each argument is encoded with its
type and length, so values of different types or splits never collide (``("a", "bc")`` vs
``("ab", "c")``). A model instance argument is keyed by its primary key *and* adds its instance
tag: the function may read the instance's fields without a query, so it depends on that row.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import inspect
import uuid
from collections.abc import Iterator
from typing import Any

from django.db import models

from .tags import instance_tag

__all__ = ["arguments_key", "simple_parameters"]


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


def simple_parameters(signature: inspect.Signature) -> tuple[tuple[str, ...], dict[str, Any]]:
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


def arguments_key(
    name: str,
    signature: inspect.Signature,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    simple: tuple[tuple[str, ...], dict[str, Any]] | None = None,
) -> tuple[str, set[str]]:
    if simple is None:
        simple = simple_parameters(signature)
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
