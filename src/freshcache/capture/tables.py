"""Which tables are tracked, and which of their columns are *keyed*.

Readers and writers never talk to each other: they agree on tags because both derive them from
the model definitions alone. For each table this module computes, identically in every process:

* the model whose label names the table's tags (the concrete model; proxies share it);
* the *keyed columns*: the primary key, every foreign key / one-to-one column, every unique
  column, the object-id column of each generic foreign key, and the columns listed in
  ``FRESHCACHE["PREDICATE_FIELDS"]``. A reader that filters a keyed column by equality depends on
  ``table?column=value``; a writer bumps that tag for the old and the new value of every row it
  touches. Only columns whose values have one canonical text form are keyed (integers, strings
  compared byte for byte, UUIDs, booleans): a value that two spellings could denote (a decimal,
  a time zone aware timestamp, a case-insensitive collation) would let a write and a read of the
  same row disagree on the tag;
* the foreign keys enforced by the database (used to prove some joins precise, see reads.py);
* the volatile columns (``FRESHCACHE["VOLATILE_FIELDS"]``), whose updates invalidate nothing.

The registry is built from the installed (current) models, but a write names its rows through
whatever model class its query was built on: a proxy, a multi-table child, an unmanaged model
sharing the table, or the historical model of a migration, which may lack columns the current
model has (or the database has, once later migrations ran). :meth:`Registry.for_model` maps
such a class onto its table: which of the table's columns it can read, which keyed columns it
lacks (writes through it bump their wildcards), and the columns that identify a row.

Excluded apps and models (``FRESHCACHE["EXCLUDE"]``, plus freshcache's own tables, always) are
neither read-tracked nor bumped.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.db import models

from ..conf import get_settings
from ..tags import alias_prefix, normalize_tag, predicate_tag, table_tag

__all__ = ["WILDCARD", "ModelColumns", "Registry", "TableInfo", "registry", "unknown_table_tag"]

#: The value of a column wildcard tag: ``blog.comment?post_id=*`` is bumped by writes whose rows
#: (or whose values for that column) are not known; every predicate reader of the column
#: depends on it too. A real value ``"*"`` shares the tag, which can only over-invalidate.
WILDCARD = "*"

_KEYED_TYPES = frozenset(
    {
        "AutoField",
        "BigAutoField",
        "SmallAutoField",
        "IntegerField",
        "BigIntegerField",
        "SmallIntegerField",
        "PositiveIntegerField",
        "PositiveBigIntegerField",
        "PositiveSmallIntegerField",
        "CharField",
        "SlugField",
        "TextField",
        "UUIDField",
        "BooleanField",
    }
)

# Rank of a keyed column when a reader constrains several: the most selective kind first.
RANK_PK, RANK_UNIQUE, RANK_DECLARED, RANK_FK = 0, 1, 2, 3


@dataclass(frozen=True)
class KeyedColumn:
    column: str
    field: models.Field[Any, Any]
    rank: int

    def normalize(self, value: Any) -> Any:
        """Return ``value`` in the form both readers and writers name tags with.

        Raises ``ValueError``/``TypeError`` (callers then fall back to a wildcard) when the value
        cannot be converted.
        """
        if value is None:
            return None
        if isinstance(value, models.Model):
            value = value.pk
        return self.field.get_prep_value(value)


@dataclass(frozen=True)
class TableInfo:
    name: str
    model: type[models.Model]
    pk_column: str | None
    keyed: dict[str, KeyedColumn]
    #: column -> (target table, target column), for foreign keys with a database constraint.
    fks: dict[str, tuple[str, str]]
    volatile: frozenset[str]

    def table_tag(self, using: str | None) -> str:
        return table_tag(self.model, using)

    def tag(self, column: str, value: Any, using: str | None) -> str:
        return predicate_tag(self.model, column, value, using)

    def wildcard(self, column: str, using: str | None) -> str:
        return predicate_tag(self.model, column, WILDCARD, using)

    def all_wildcards(self, using: str | None) -> set[str]:
        tags = {self.wildcard(c, using) for c in self.keyed}
        tags.add(self.table_tag(using))
        return tags


@dataclass(frozen=True)
class ModelColumns:
    """A tracked table as one model class sees it (the class a write's query was built on)."""

    info: TableInfo
    #: The concrete model whose fields name the columns (a proxy's concrete model).
    model: type[models.Model]
    #: column -> attname, for the columns of the table this model declares.
    attnames: dict[str, str]
    #: The columns that identify a row (the primary key; several for a composite key); empty
    #: when the model does not declare them.
    ident: tuple[str, ...]
    #: What a write reads of its rows: ``ident`` first, then the keyed columns it declares.
    columns: tuple[str, ...]
    #: Keyed columns of the table that this model does not declare: a write through it cannot
    #: read their values, so it bumps their wildcards.
    missing: frozenset[str]
    #: Keyed columns the database computes (``GeneratedField``): any UPDATE may change them.
    generated: frozenset[str]
    #: False for an unmanaged model: its "table" may be a view whose rows cannot be locked.
    managed: bool

    def missing_wildcards(self, using: str | None) -> set[str]:
        return {self.info.wildcard(c, using) for c in self.missing}


def _model_columns(info: TableInfo, model: type[models.Model]) -> ModelColumns:
    meta = (model._meta.concrete_model or model)._meta
    concrete = meta.model
    attnames = {f.column: f.attname for f in meta.local_concrete_fields if f.column}
    pk = meta.pk
    ident: tuple[str, ...] = ()
    if pk is not None:
        # A CompositePrimaryKey (Django 5.2+) has no column of its own, only its fields'.
        cols = (pk.column,) if pk.column is not None else tuple(getattr(pk, "columns", ()))
        if cols and all(c in attnames for c in cols):
            ident = cols
    declared = [c for c in info.keyed if c in attnames and c not in ident]
    generated = {f.column for f in meta.local_concrete_fields if getattr(f, "generated", False)}
    return ModelColumns(
        info=info,
        model=concrete,
        attnames=attnames,
        ident=ident,
        columns=(*ident, *declared),
        missing=frozenset(c for c in info.keyed if c not in attnames),
        generated=frozenset(c for c in declared if c in generated),
        managed=bool(meta.managed),
    )


@dataclass
class Registry:
    tables: dict[str, TableInfo] = field(default_factory=dict)
    excluded: frozenset[str] = frozenset()
    # Weak keys: a migration renders a new historical model class for every state it needs.
    _columns: weakref.WeakKeyDictionary[type[models.Model], ModelColumns | None] = field(
        default_factory=weakref.WeakKeyDictionary, repr=False, compare=False
    )

    def known(self, name: str) -> bool:
        return name in self.tables or name in self.excluded

    def for_model(self, model: type[models.Model]) -> ModelColumns | None:
        """How ``model`` (any class mapped to a table: a proxy, a multi-table child, an
        unmanaged or historical model) sees its tracked table; ``None`` if it is not tracked."""
        try:
            return self._columns[model]
        except KeyError:
            pass
        info = self.tables.get(model._meta.db_table)
        found = _model_columns(info, model) if info is not None else None
        self._columns[model] = found
        return found


def unknown_table_tag(name: str, using: str | None) -> str:
    """The tag of a table no installed model maps (read and written by raw SQL only)."""
    return normalize_tag(f"{alias_prefix(using)}db_table:{name}")


def _keyable(f: models.Field[Any, Any]) -> bool:
    if not type(f).__module__.startswith("django.db.models"):
        return False  # a custom field may prepare values in ways two sides could disagree on
    if getattr(f, "db_collation", None):
        return False
    if (f.is_relation and f.many_to_one) or f.one_to_one:
        target = getattr(f, "target_field", None)
        return target is not None and target is not f and _keyable(target)
    return f.get_internal_type() in _KEYED_TYPES


def _excluded(model: type[models.Model], exclude: set[str]) -> bool:
    meta = model._meta
    if meta.app_label == "freshcache":
        return True  # the database store's own tables: never tracked, whatever EXCLUDE says
    if meta.app_label.lower() in exclude or meta.label_lower in exclude:
        return True
    owner = meta.auto_created
    if isinstance(owner, type):  # an m2m through table follows the model declaring the m2m
        return owner._meta.app_label.lower() in exclude or owner._meta.label_lower in exclude
    return False


def _build(
    exclude: tuple[str, ...], volatile: tuple[str, ...], declared: tuple[str, ...]
) -> Registry:
    excl = {e.lower() for e in exclude}
    volatile_set = {v.lower() for v in volatile}
    declared_set = {d.lower() for d in declared}
    by_table: dict[str, list[type[models.Model]]] = {}
    excluded: set[str] = set()
    for model in apps.get_models(include_auto_created=True):
        meta = model._meta
        if meta.proxy or meta.swapped or not meta.db_table:
            continue
        if _excluded(model, excl):
            excluded.add(meta.db_table)
            continue
        by_table.setdefault(meta.db_table, []).append(model)
    reg = Registry(excluded=frozenset(excluded - set(by_table)))
    for table, models_ in by_table.items():
        # A managed model names the table's tags when there is one (``invalidate(Model)``
        # names them after the model it is given), then the label decides, in every process.
        models_.sort(key=lambda m: (not m._meta.managed, m._meta.label_lower))
        keyed: dict[str, KeyedColumn] = {}
        fks: dict[str, tuple[str, str]] = {}
        vol: set[str] = set()
        for model in models_:
            meta = model._meta
            gfk_ids = {
                getattr(f, "fk_field", None) for f in meta.private_fields if hasattr(f, "fk_field")
            }
            for f in meta.local_concrete_fields:
                if f.column is None:
                    continue
                label = f"{meta.label_lower}.{f.name}".lower()
                if label in volatile_set:
                    vol.add(f.column)
                if (f.is_relation and f.many_to_one) or f.one_to_one:
                    target = f.target_field  # type: ignore[attr-defined]
                    if getattr(f, "db_constraint", False) and target is not None:
                        fks[f.column] = (target.model._meta.db_table, target.column)
                if f.column in keyed or not _keyable(f):
                    continue
                if f.primary_key:
                    rank = RANK_PK
                elif f.unique:
                    rank = RANK_UNIQUE
                elif label in declared_set or f.name in gfk_ids:
                    rank = RANK_DECLARED
                elif f.is_relation:
                    rank = RANK_FK
                else:
                    continue
                keyed[f.column] = KeyedColumn(f.column, f, rank)
        main = models_[0]
        pk = main._meta.pk
        reg.tables[table] = TableInfo(
            name=table,
            model=main,
            pk_column=pk.column if pk is not None and pk.column in keyed else None,
            keyed=keyed,
            fks=fks,
            volatile=frozenset(vol),
        )
    return reg


_cache: tuple[Any, Registry] | None = None


def registry() -> Registry:
    """Return the registry for the current settings (rebuilt when ``FRESHCACHE`` changes)."""
    global _cache
    conf = get_settings()
    cached = _cache
    if cached is not None and cached[0] is conf:
        return cached[1]
    reg = _build(conf.exclude, conf.volatile_fields, conf.predicate_fields)
    _cache = (conf, reg)
    return reg


def reset() -> None:
    """Forget the cached registry (after models were added at run time)."""
    global _cache
    _cache = None
