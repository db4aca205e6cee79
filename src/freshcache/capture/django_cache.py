"""Reads through Django's cache framework are dependencies; its writes invalidate them.

A value read with ``cache.get()`` inside a cached computation is data the result was built
from, like a row: the computation depends on one tag per key read and on one tag per cache::

    django.cache:<cache>:<digest of the backend's full key>   one key (after make_key: the
                                                             cache's KEY_PREFIX and VERSION)
    django.cache:<cache>                                     the whole cache (clear())

``<cache>`` names the cache by its ``BACKEND`` and ``LOCATION``: the first alias in sorted order
of ``CACHES`` with the same pair, so that two aliases of one server share their tags. Every
process with the same settings names a key the same way.

**Reads** (``get``, ``get_many``, ``has_key``, ``key in cache``, ``get_or_set``, ``add``, and
their ``a…`` forms) add the key's tag and the cache's tag to the innermost open scope. Outside a
scope they cost one ``ContextVar`` lookup. **Writes** (``set``, ``add`` that stored, ``set_many``,
``delete``, ``delete_many``, ``incr``, ``decr``, ``get_or_set`` that stored, ``incr_version``,
``clear``) bump the tags *after* the backend returned and before the call returns to its caller,
through ``invalidate_tags(now=True)``: a cache write is visible at once and no rollback undoes it,
so the bump does not wait for a transaction. A computation that read the old value took its
snapshot before reading, so the store's race guard refuses it; one that starts after the write
reads the new value. A failed bump goes to the invalidation log, like any other. A write inside
a cached computation makes it uncacheable (on a hit its side effect would not happen). ``touch``
changes no value and bumps nothing.

**Process-local caches.** ``LocMemCache`` (and ``FileBasedCache``, one machine's disk) hold one
copy per process: a ``delete()`` in one gunicorn worker leaves the other worker's copy as it was,
and no bump can tell that worker its copy is old. A computation for a *shared* store that reads
such a cache is therefore computed and served but not stored (``Scope.shared``), with one
WARNING per cache and process; ``freshcache.W005`` names the fix (a shared ``CACHES`` backend).
``FRESHCACHE["DJANGO_CACHES"]`` declares a cache ``"shared"`` (its values are the same in every
process: then reads are ordinary dependencies) or ``"local"`` (a custom backend). With a store
that is not shared (``memory://``) a local cache's reads are ordinary dependencies: that store
lives in the same process. ``DummyCache`` stores nothing and is not followed.

**How it is hooked.** ``CacheHandler.create_connection`` (the one place every backend of
``django.core.cache.caches`` is built, and the only one that knows its alias) is wrapped, and
each backend it builds gets wrapping *instance* attributes for the public methods its class
implements (or overrides). Methods that ``BaseCache`` implements by calling the others
(``get_many``, ``has_key``, ``get_or_set``, ``incr_version``, every ``a…`` method) are left alone
unless the class overrides them: the calls they make are seen. A write nested in a followed write
(an overridden ``get_or_set`` calling ``add``) is handled once, by the outer call. Nothing is
changed on any class but ``CacheHandler``, so backends of any library are followed. ``unpatch``
removes every wrapper. Bookkeeping never changes what the cache call returns or raises: a key
that cannot be named makes a read uncacheable, and a write bumps the whole cache instead.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from asgiref.sync import sync_to_async
from django.core.cache import CacheHandler, caches
from django.core.cache.backends.base import BaseCache

from ..scope import Scope, current_scope, mark_uncacheable

__all__ = ["PREFIX", "is_patched", "key_tag", "locality", "patch", "unpatch"]

logger = logging.getLogger("freshcache")

#: The prefix of every tag this module names.
PREFIX = "django.cache:"
_MARK = "_freshcache_cache"

# (what the call does, the key argument's name and position, the version's position)
_READ, _READ_MANY, _WRITE, _WRITE_MANY, _ADD, _GET_OR_SET, _CLEAR, _VERSION = range(8)
_METHODS: dict[str, tuple[int, str, int, int]] = {
    "get": (_READ, "key", 0, 2),
    "get_many": (_READ_MANY, "keys", 0, 1),
    "has_key": (_READ, "key", 0, 1),
    "add": (_ADD, "key", 0, 3),
    "get_or_set": (_GET_OR_SET, "key", 0, 3),
    "set": (_WRITE, "key", 0, 3),
    "delete": (_WRITE, "key", 0, 1),
    "incr": (_WRITE, "key", 0, 2),
    "decr": (_WRITE, "key", 0, 2),
    "set_many": (_WRITE_MANY, "data", 0, 2),
    "delete_many": (_WRITE_MANY, "keys", 0, 1),
    "incr_version": (_VERSION, "key", 0, 2),
    "decr_version": (_VERSION, "key", 0, 2),
    "clear": (_CLEAR, "", -1, -1),
}

# Set while a followed write runs: writes it makes itself are not bumped twice.
_writing: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "freshcache_cache_write", default=False
)
_original_create: list[Callable[..., Any]] = []
_warned: set[str] = set()
_warned_lock = threading.Lock()


def locality(backend: BaseCache) -> str | None:
    """``"locmem"`` or ``"filebased"`` for Django's process- or machine-local backends (and
    their subclasses), else ``None`` (assumed shared). ``DJANGO_CACHES`` is not applied here."""
    from django.core.cache.backends.filebased import FileBasedCache
    from django.core.cache.backends.locmem import LocMemCache

    if isinstance(backend, LocMemCache):
        return "locmem"
    if isinstance(backend, FileBasedCache):
        return "filebased"
    return None


def cache_label(alias: str) -> str:
    """The name tags give the cache ``alias``: the first alias (sorted) with its ``BACKEND`` and
    ``LOCATION``, so aliases of one server agree; ``#digest`` when it is not a plain name."""
    configured = caches.settings
    params = configured.get(alias, {})
    same = (params.get("BACKEND"), repr(params.get("LOCATION", "")))
    label = min(
        (
            a
            for a, p in configured.items()
            if (p.get("BACKEND"), repr(p.get("LOCATION", ""))) == same
        ),
        default=alias,
    )
    if label.isascii() and label.isprintable() and ":" not in label and " " not in label:
        return label[:64]
    return "#" + hashlib.blake2b(label.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def key_tag(label: str, full_key: Any) -> str:
    """The tag of one key of cache ``label``; ``full_key`` is what the backend's ``make_key``
    returned (a ``str`` for Django's key functions)."""
    text = full_key if isinstance(full_key, str) else repr(full_key)
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()
    return f"{PREFIX}{label}:{digest}"


class _Followed:
    """What the wrappers of one backend instance know about it."""

    __slots__ = ("alias", "backend", "label", "local", "names", "whole")

    def __init__(self, backend: BaseCache, alias: str) -> None:
        self.backend = backend
        self.alias = alias
        self.label = cache_label(alias)
        self.whole = PREFIX + self.label
        self.local = locality(backend)
        self.names: list[str] = []

    def tags(self, keys: Iterable[Any], version: Any) -> set[str]:
        make_key = self.backend.make_key
        return {key_tag(self.label, make_key(key, version=version)) for key in keys}

    def local_kind(self) -> str | None:
        """The kind of local cache this is, after ``DJANGO_CACHES``; ``None`` if shared."""
        from ..conf import get_settings

        declared = get_settings().django_caches.get(self.alias)
        if declared == "shared":
            return None
        return (self.local or "custom") if declared == "local" else self.local


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
        if what in _warned:
            return
        _warned.add(what)
    if exc is not None:
        logger.warning(message, *args[:-1], exc_info=exc)
    else:
        logger.warning(message, *args)


def _wrap(
    followed: _Followed, base: str, is_async: bool, original: Callable[..., Any]
) -> Callable[..., Any]:
    kind, key_name, key_at, version_at = _METHODS[base]

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
            if callable(default) or result is not default:
                return None  # served from the cache
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
            if _writing.get():
                return original(*args, **kwargs)
            args, kwargs = _materialized(kind, key_name, key_at, args, kwargs)
            args, kwargs, produced = before(args, kwargs)
            token = _writing.set(True)
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
        if _writing.get() or (kind in (_READ, _READ_MANY) and current_scope() is None):
            return await original(*args, **kwargs)
        args, kwargs = _materialized(kind, key_name, key_at, args, kwargs)
        args, kwargs, produced = before(args, kwargs)
        token = _writing.set(kind not in (_READ, _READ_MANY))
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


def follow(backend: Any, alias: str) -> None:
    """Wrap the public methods of one backend instance (idempotent; never raises)."""
    if not isinstance(backend, BaseCache) or _MARK in vars(backend):
        return
    from django.core.cache.backends.dummy import DummyCache

    if isinstance(backend, DummyCache):
        return  # it never returns a value, so nothing read from it can go stale
    try:
        followed = _Followed(backend, alias)
        setattr(backend, _MARK, followed)
        for base in _METHODS:
            for name, is_async in ((base, False), ("a" + base, True)):
                if not hasattr(BaseCache, name):
                    continue
                impl = getattr(type(backend), name, None)
                if impl is None or impl is getattr(BaseCache, name):
                    continue  # BaseCache's own: it calls the methods followed here
                setattr(backend, name, _wrap(followed, base, is_async, getattr(backend, name)))
                followed.names.append(name)
    except Exception:
        # Half-followed would be worse than not at all (reads seen, writes not): undo.
        unfollow(backend)
        logger.exception("freshcache: could not follow cache %r; its reads are not tracked", alias)


def unfollow(backend: Any) -> None:
    """Remove the wrappers :func:`follow` put on ``backend``."""
    followed = vars(backend).pop(_MARK, None)
    if followed is not None:
        for name in followed.names:
            vars(backend).pop(name, None)


def _create_connection(self: CacheHandler, alias: str) -> Any:
    backend = _original_create[0](self, alias)
    follow(backend, alias)
    return backend


def is_patched() -> bool:
    return bool(_original_create)


def patch() -> None:
    """Follow every cache backend Django builds from now on, and those built already."""
    if _original_create:
        return
    _original_create.append(CacheHandler.create_connection)
    CacheHandler.create_connection = _create_connection  # type: ignore[method-assign]
    for alias in caches.settings:
        backend = _built(alias)
        if backend is not None:
            follow(backend, alias)


def unpatch() -> None:
    """Undo :func:`patch` exactly, on the backends built meanwhile too."""
    if not _original_create:
        return
    CacheHandler.create_connection = _original_create.pop()  # type: ignore[method-assign]
    for alias in caches.settings:
        backend = _built(alias)
        if backend is not None:
            unfollow(backend)


def _built(alias: str) -> Any:
    """The backend of ``alias`` this thread has built already, without building one."""
    return getattr(caches._connections, alias, None)  # type: ignore[attr-defined]
