"""What a dependency tag is, and how one is named.

A tag is a short ASCII string naming a piece of data a cached value was built from:

* instance  ``blog.post:7``             one row, by primary key;
* predicate ``blog.comment?post_id=7``  the rows of a table whose column has that value;
* table     ``blog.comment``            any row of a table;
* free-form ``weather:london``          named by hand for data the ORM does not see.

When more than one database is configured, ORM tags of a non-default alias are prefixed with the
alias (``other/blog.post:7``) so that a write on one database never satisfies a read of another.
A read replica (``READ_REPLICAS``) is the same data as its primary: its reads are named as the
primary's, so the primary's writes invalidate them.

Long or non-ASCII values are replaced by a digest so that a tag is always a short, safe key part.
An instance tag is, by construction, the predicate tag on the primary key column: a write bumps
it, and a reader that filtered on ``pk`` depends on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from django.db import models

__all__ = [
    "TAG_MAX_LENGTH",
    "Taggable",
    "alias_prefix",
    "instance_tag",
    "normalize_tag",
    "predicate_tag",
    "table_tag",
    "tags_for",
]

#: Tags longer than this (after naming) are replaced by a digest of themselves.
TAG_MAX_LENGTH = 200

Taggable = str | models.Model | type[models.Model]


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def _safe(text: str) -> str:
    """Return ``text`` if it is short printable ASCII, else a stable digest of it."""
    if len(text) <= TAG_MAX_LENGTH and text.isascii() and text.isprintable() and " " not in text:
        return text
    return "#" + _digest(text)


def alias_prefix(using: str | None) -> str:
    """``""`` for the default database, else ``"<alias>/"`` (a replica's: its primary's)."""
    if not using or using == "default":
        return ""
    from .conf import get_settings

    using = get_settings().read_replicas.get(using, using)  # a replica reads its primary's rows
    return "" if using == "default" else using + "/"


def table_tag(model: type[models.Model], using: str | None = None) -> str:
    """Return the tag naming every row of ``model``'s table, e.g. ``blog.comment``.

    Proxy models share their concrete model's table and therefore its tags.
    """
    meta = model._meta.concrete_model._meta if model._meta.concrete_model else model._meta
    return f"{alias_prefix(using)}{meta.label_lower}"


def _value_text(value: Any) -> str:
    if value is None:
        return "\x00null"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, models.Model):
        value = value.pk
    return str(value)


def predicate_tag(
    model: type[models.Model], column: str, value: Any, using: str | None = None
) -> str:
    """Return the tag naming the rows of ``model`` whose ``column`` equals ``value``.

    ``column`` is the database column (``post_id``). The primary key column gives the instance
    tag, so ``predicate_tag(Post, "id", 7) == instance_tag(post7)``.
    """
    base = table_tag(model, using)
    concrete = model._meta.concrete_model or model
    text = _value_text(value)
    if len(text) > 64 or not (text.isascii() and text.isprintable()) or " " in text:
        text = "#" + _digest(text)
    if concrete._meta.pk is not None and column == concrete._meta.pk.column:
        return _safe(f"{base}:{text}")
    return _safe(f"{base}?{column}={text}")


def instance_tag(obj: models.Model, using: str | None = None) -> str:
    """Return the tag naming one saved model instance, e.g. ``blog.post:7``."""
    if obj.pk is None:
        raise ValueError(f"{obj!r} has no primary key yet, so it has no tag; save it first.")
    concrete = type(obj)._meta.concrete_model or type(obj)
    return predicate_tag(concrete, concrete._meta.pk.column or "", obj.pk, using)


def normalize_tag(tag: str) -> str:
    """Check a hand-written tag and return it in its stored form."""
    if not isinstance(tag, str):
        raise TypeError(
            f"a tag must be a str, a model instance or a model class, not {type(tag).__name__}"
        )
    if not tag:
        raise ValueError("a tag cannot be the empty string")
    return _safe(tag)


def tags_for(items: Iterable[Taggable], using: str | None = None) -> set[str]:
    """Turn strings, model instances and model classes into tags."""
    out: set[str] = set()
    for item in items:
        if isinstance(item, str):
            out.add(normalize_tag(item))
        elif isinstance(item, models.Model):
            out.add(instance_tag(item, using or item._state.db))
        elif isinstance(item, type) and issubclass(item, models.Model):
            out.add(table_tag(item, using))
        else:
            raise TypeError(
                "a tag must be a str, a model instance or a model class, "
                f"not {type(item).__name__} ({item!r})"
            )
    return out
