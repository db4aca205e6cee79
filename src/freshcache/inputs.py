"""What a computation is given that was loaded before it began: tags and the age of the oldest.

A fragment's values and template context, and an ``@cached`` function's arguments, may hold
model instances (with their ``select_related`` and prefetched objects) and evaluated querysets.
The computation reads them without a query, so capture sees nothing: :func:`note_inputs` adds
their tags to the computation's scope, and the read generation of the oldest of them
(``watermark.py``), so the value is stored only if none of them changed since it was loaded.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from django.db import models
from django.http import HttpRequest, HttpResponseBase
from django.utils.functional import LazyObject

from .scope import current_scope
from .tags import instance_tag, table_tag
from .watermark import read_of

__all__ = ["describe", "note_inputs"]

#: At most this many values (and items of each list) are looked at.
MAX_OBJECTS = 2000


class _Found:
    __slots__ = ("oldest", "tags")

    def __init__(self) -> None:
        self.tags: set[str] = set()
        self.oldest: int | None = None

    def read(self, obj: Any, inherited: int | None = None) -> int | None:
        """Note ``obj``'s read generation; return it. A saved instance with none (unpickled
        from another cache, or a ``select_related`` object: ``inherited`` is its parent's) is
        taken as that old, or of unknown age (0: nothing given it is stored)."""
        found = read_of(obj)
        if found is None and isinstance(obj, models.Model) and not obj._state.adding:
            found = inherited if inherited is not None else 0
        if found is not None and (self.oldest is None or found < self.oldest):
            self.oldest = found
        return found

    def model(self, obj: models.Model, depth: int = 2, inherited: int | None = None) -> None:
        if obj.pk is None:
            return
        self.tags.add(instance_tag(obj, obj._state.db))
        read = self.read(obj, inherited)
        if depth <= 0:
            return
        for related in getattr(obj._state, "fields_cache", {}).values():
            if isinstance(related, models.Model):
                self.model(related, depth - 1, read)
        for rows in getattr(obj, "_prefetched_objects_cache", {}).values():
            if isinstance(rows, models.QuerySet):
                self.queryset(rows)

    def queryset(self, rows: models.QuerySet[Any]) -> None:
        cached = rows._result_cache
        if cached is None:
            return
        self.tags.add(table_tag(rows.model, rows.db))
        self.read(rows)
        # Prefetched querysets are filled by Django, not by running them: their rows carry it.
        read = read_of(rows)
        for item in cached[:MAX_OBJECTS]:
            if isinstance(item, models.Model):
                self.read(item, read)


def describe(values: Iterable[Any]) -> tuple[set[str], int | None]:
    """``(tags, oldest read generation or None)`` of the model instances and evaluated
    querysets among ``values``, lists and tuples of them, dicts' values, and paginator pages.
    Lazy objects (``request.user``) are never evaluated."""
    found = _Found()
    for seen, value in enumerate(values):
        if seen >= MAX_OBJECTS:
            break
        _visit(found, value)
    return found.tags, found.oldest


def _visit(found: _Found, value: Any, level: int = 0) -> None:
    if isinstance(value, LazyObject):
        return
    if isinstance(value, models.Model):
        found.model(value, depth=1 if level else 2)
    elif isinstance(value, models.QuerySet):
        found.queryset(value)
    elif level >= 3:
        return
    elif isinstance(value, list | tuple | set | frozenset | dict) and value:
        items = value.values() if isinstance(value, dict) else value
        for index, item in enumerate(items):
            if index >= MAX_OBJECTS:
                break
            _visit(found, item, level + 1)
    elif level == 0 and isinstance(getattr(value, "object_list", None), models.QuerySet | list):
        _visit(found, value.object_list, 1)  # a paginator Page
    elif level < 2 and _plain_object(value):
        # A view model, a dataclass, a ModelForm (its .instance): its attributes, not its
        # properties (nothing is computed or queried).
        for index, item in enumerate(vars(value).values()):
            if index >= MAX_OBJECTS:
                break
            _visit(found, item, level + 1)


def _plain_object(value: Any) -> bool:
    return (
        hasattr(value, "__dict__")
        and not callable(value)
        and not isinstance(value, type | ModuleType | HttpRequest | HttpResponseBase)
    )


def note_inputs(values: Iterable[Any]) -> None:
    """Record, in the innermost open scope, that its computation uses ``values``, loaded before
    it began: their tags, and the read generation of the oldest (``Scope.read_at``)."""
    scope = current_scope()
    if scope is None:
        return
    tags, oldest = describe(values)
    scope.tags.update(tags)
    scope.note_read(oldest)
