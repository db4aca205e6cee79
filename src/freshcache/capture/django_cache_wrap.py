"""The wrappers :mod:`.django_cache` puts on a followed backend: one per public method.

Each wrapper sees the call's key arguments (with ``make_key``'s ``version``), records the read in
the innermost open scope, and after a write bumps the keys' tags before returning to the caller
(``django_cache``'s docstring states the rules: what is a read, what a write, what stays
uncacheable). :data:`METHODS` says what each method does and where its arguments are; a method
``BaseCache`` implements by calling the others is never wrapped, so a call is seen once.

A write that a followed write makes itself (an overridden ``get_or_set`` calling ``add``) is not
bumped twice: ``_writing`` is set while a followed write runs. Bookkeeping never changes what the
cache call returns or raises.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async

from ..scope import Scope, current_scope, mark_uncacheable

if TYPE_CHECKING:
    from .django_cache import _Followed

__all__ = ["METHODS", "warned", "wrap"]

logger = logging.getLogger("freshcache")

# (what the call does, the key argument's name and position, the version's position)
_READ, _READ_MANY, _WRITE, _WRITE_MANY, _ADD, _GET_OR_SET, _CLEAR, _VERSION = range(8)
METHODS: dict[str, tuple[int, str, int, int]] = {
    "get": (_READ, "key", 0, 2),
    "get_many": (_READ_MANY, "keys", 0, 1),
    "has_key": (_READ, "key", 0, 1),
    "add": (_ADD, "key", 0, 3),
    "get_or_set": (_GET_OR_SET, "key", 0, 3),
    "set": (_WRITE, "key", 0, 3),
    "delete": (_WRITE, "key", 0, 1),
    "incr": (_WRITE, "key", 0, 2),
    "decr": (_WRITE, "key", 0, 2),
    "touch": (_WRITE, "key", 0, 2),  # touch(key, 0) deletes the key
    "set_many": (_WRITE_MANY, "data", 0, 2),
    "delete_many": (_WRITE_MANY, "keys", 0, 1),
    "incr_version": (_VERSION, "key", 0, 2),
    "decr_version": (_VERSION, "key", 0, 2),
    "clear": (_CLEAR, "", -1, -1),
}

# The backend whose followed write is running: writes it makes to itself are not bumped twice
# (a write it makes to another backend is, since its own bump does not name those keys).
_writing: contextvars.ContextVar[object] = contextvars.ContextVar(
    "freshcache_cache_write", default=None
)
#: The warnings given already (once per process each); tests reset it.
warned: set[str] = set()
_warned_lock = threading.Lock()


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], name: str, at: int, default: Any) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[at] if 0 <= at < len(args) else default


def _keys(kind: int, value: Any) -> list[Any]:
    if kind in (_READ_MANY, _WRITE_MANY):
        return list(value)  # a dict (set_many) gives its keys
    return [value]


def _materialized(
    kind: int, name: str, at: int, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The call's arguments with a one-shot iterable of keys (a generator) made a list: the
    backend and freshcache then both see every key."""
    if kind not in (_READ_MANY, _WRITE_MANY):
        return args, kwargs
    value = _arg(args, kwargs, name, at, None)
    if value is None or isinstance(value, list | tuple | dict | set | frozenset):
        return args, kwargs
    if name in kwargs:
        return args, {**kwargs, name: list(value)}
    return (*args[:at], list(value), *args[at + 1 :]), kwargs


def _read(followed: _Followed, scope: Scope, keys: list[Any], version: Any) -> None:
    try:
        tags = followed.tags(keys, version)
    except Exception as exc:
        reason = f"freshcache could not name a key read from cache {followed.alias!r}"
        scope.refuse(f"{reason} ({type(exc).__name__})")
        _warn_once(f"name:{followed.alias}", "%s: the computation is not stored", reason, exc)
        return
    tags.add(followed.whole)
    scope.add(tags)
    if scope.shared and scope.uncacheable is None:
        kind = followed.local_kind()
        if kind is not None:
            scope.refuse(f"read a process-local cache ({kind} {followed.alias!r})")
            _warn_once(
                f"local:{followed.alias}",
                "freshcache: a cached computation read CACHES[%r] (%s), which each process "
                "keeps for itself, while the freshcache store is shared: a write in another "
                "process would not reach this copy, so such results are served but not stored. "
                "Use a shared CACHES backend (Redis, Memcached, database); see freshcache.W005.",
                followed.alias,
                kind,
            )


def _written(followed: _Followed, keys: list[Any] | None, version: Any, delta: Any = 0) -> None:
    """Bump the tags of ``keys`` (``None``: the whole cache). Never raises."""
    from ..conf import get_settings
    from ..invalidation import invalidate_tags

    mark_uncacheable(f"wrote to Django's cache ({followed.alias!r})")
    try:
        tags = {followed.whole} if keys is None else followed.tags(keys, version)
        if delta:  # incr_version: the value moved from one version's key to another's
            base = followed.backend.version if version is None else version
            tags |= followed.tags(keys or (), base + delta)
    except Exception as exc:
        tags = {followed.whole}
        _warn_once(
            f"write:{followed.alias}",
            "freshcache: %s; every read of that cache is invalidated instead",
            f"could not name a key written to cache {followed.alias!r}",
            exc,
        )
    try:
        invalidate_tags(tags, get_settings().log_database, now=True)
    except Exception:
        logger.exception(
            "freshcache: could not invalidate after a write to cache %r", followed.alias
        )


def _warn_once(what: str, message: str, *args: Any) -> None:
    exc = args[-1] if args and isinstance(args[-1], BaseException) else None
    with _warned_lock:
        if what in warned:
            return
        warned.add(what)
    if exc is not None:
        logger.warning(message, *args[:-1], exc_info=exc)
    else:
        logger.warning(message, *args)


def wrap(
    followed: _Followed, base: str, is_async: bool, original: Callable[..., Any]
) -> Callable[..., Any]:
    kind, key_name, key_at, version_at = METHODS[base]

    def before(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any, list[Any]]:
        """(args, kwargs, a one-item list set when get_or_set produced its default)."""
        produced: list[Any] = []
        if kind != _GET_OR_SET:
            return args, kwargs, produced
        default = _arg(args, kwargs, "default", 1, None)
        if not callable(default):
            return args, kwargs, produced

        def produce() -> Any:
            produced.append(True)
            return default()

        if "default" in kwargs:
            return args, {**kwargs, "default": produce}, produced
        return (*args[:1], produce, *args[2:]), kwargs, produced

    def after(
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        result: Any,
        raised: bool,
        produced: list[Any],
    ) -> Callable[[], None] | None:
        """Record the read now; return the bump to run, if the call wrote."""
        version = _arg(args, kwargs, "version", version_at, None)
        keys = [] if kind == _CLEAR else _keys(kind, _arg(args, kwargs, key_name, key_at, None))
        if kind in (_READ, _READ_MANY, _ADD, _GET_OR_SET):
            scope = current_scope()
            if scope is not None:
                _read(followed, scope, keys, version)
        if kind in (_READ, _READ_MANY):
            return None
        if not raised and kind == _ADD and result is False:
            return None  # nothing was stored
        if kind == _GET_OR_SET and not raised and not produced:
            default = _arg(args, kwargs, "default", 1, None)
            if callable(default):
                return None  # served from the cache: the default was not produced
            # A plain default: whether it was stored cannot be told; an extra bump is harmless.
        if kind == _CLEAR:
            return functools.partial(_written, followed, None, None)
        delta = _arg(args, kwargs, "delta", 1, 1) if kind == _VERSION else 0
        return functools.partial(_written, followed, keys, version, delta)

    if kind in (_READ, _READ_MANY) and not is_async:

        def read(*args: Any, **kwargs: Any) -> Any:
            if current_scope() is None:
                return original(*args, **kwargs)
            args, kwargs = _materialized(kind, key_name, key_at, args, kwargs)
            try:
                return original(*args, **kwargs)
            finally:
                after(args, kwargs, None, False, [])

        return read

    if not is_async:

        def call(*args: Any, **kwargs: Any) -> Any:
            if _writing.get() is followed:
                return original(*args, **kwargs)
            args, kwargs = _materialized(kind, key_name, key_at, args, kwargs)
            args, kwargs, produced = before(args, kwargs)
            token = _writing.set(followed)
            result, raised = None, True
            try:
                result = original(*args, **kwargs)
                raised = False
                return result
            finally:
                _writing.reset(token)
                bump = after(args, kwargs, result, raised, produced)
                if bump is not None:
                    bump()

        return call

    async def acall(*args: Any, **kwargs: Any) -> Any:
        if _writing.get() is followed or (
            kind in (_READ, _READ_MANY) and current_scope() is None
        ):
            return await original(*args, **kwargs)
        args, kwargs = _materialized(kind, key_name, key_at, args, kwargs)
        args, kwargs, produced = before(args, kwargs)
        token = _writing.set(followed if kind not in (_READ, _READ_MANY) else _writing.get())
        result, raised = None, True
        try:
            result = await original(*args, **kwargs)
            raised = False
            return result
        finally:
            _writing.reset(token)
            bump = after(args, kwargs, result, raised, produced)
            if bump is not None:
                await sync_to_async(bump, thread_sensitive=True)()

    return acall
