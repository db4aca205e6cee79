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
bumps its key (``touch(key, 0)`` deletes it). Methods other than Django's (django-redis's
``delete_pattern``, ``expire``) are not followed (docs/limits.md).

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
changed on any class but ``CacheHandler``, so backends of any library are followed (the
wrappers are in ``django_cache_wrap.py``). ``unpatch`` removes every wrapper. Bookkeeping never
changes what the cache call returns or raises: a key that cannot be named makes a read
uncacheable, and a write bumps the whole cache instead.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from django.core.cache import CacheHandler, caches
from django.core.cache.backends.base import BaseCache

from .django_cache_wrap import METHODS, wrap
from .django_cache_wrap import warned as _warned  # noqa: F401 - tests reset it here

__all__ = ["PREFIX", "is_patched", "key_tag", "locality", "patch", "unpatch"]

logger = logging.getLogger("freshcache")

#: The prefix of every tag this module names.
PREFIX = "django.cache:"
_MARK = "_freshcache_cache"

_original_create: list[Callable[..., Any]] = []


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
        for base in METHODS:
            for name, is_async in ((base, False), ("a" + base, True)):
                if not hasattr(BaseCache, name):
                    continue
                impl = getattr(type(backend), name, None)
                if impl is None or impl is getattr(BaseCache, name):
                    continue  # BaseCache's own: it calls the methods followed here
                setattr(backend, name, wrap(followed, base, is_async, getattr(backend, name)))
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
