"""The tags each write bumps.

For every row a write touches: its instance tag, the tag of every keyed column for the row's
**old and new** values, and the table tag. Where the rows (or a column's values) are not known,
the column wildcards (``table?col=*``) stand in for the values, so every predicate reader of that
column is invalidated; writes never bump less than the truth.

* ``INSERT`` (``save()``, ``create()``, ``bulk_create``, m2m ``add``/``set``, ``get_or_create``):
  the new values come from the objects inserted, the primary key from ``RETURNING``. Conflict
  handling: ``ignore_conflicts`` inserts rows whose primary key is not returned (the key column's
  wildcard is bumped); ``update_conflicts`` changes rows that are not known (all wildcards).
* ``UPDATE`` (``save()``, ``update_fields``, ``QuerySet.update``, ``bulk_update``, SET_NULL,
  multi-table parents): before the statement, the rows' primary keys and keyed columns are read
  with ``SELECT ... FOR UPDATE`` (so no concurrent transaction can change them before we commit)
  and the UPDATE is restricted to exactly those primary keys (so a row that started to match in
  between is not touched unseen; under READ COMMITTED this is the same as the statement having
  run a moment earlier). New values are the literals assigned, or read back after the statement
  when the assignment is an expression. An UPDATE that assigns only volatile columns bumps nothing.
* ``DELETE`` (``delete()``, cascades, ``QuerySet.delete``, m2m ``remove``/``clear``): as UPDATE,
  old values only.
* More than ``MAX_ROWS`` rows: the statement runs unrestricted and bumps the table tag and every
  column wildcard instead.

When no transaction is open, the pre-read and the statement run in one ``atomic()`` block (the
row locks need a transaction); the bump then happens as that block commits, before the write
returns. Inside a transaction, ``invalidate_tags`` defers the bump to the outermost commit and
drops it on rollback.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from contextlib import nullcontext
from typing import Any

from django.db import connections, transaction
from django.db.models.sql.constants import MULTI
from django.db.models.sql.query import Query

from ..scope import mark_uncacheable
from .reads import _conjuncts, _keyed_lookup
from .tables import TableInfo, registry

__all__ = ["MAX_ROWS", "bump", "delete", "insert", "row_tags", "update"]

#: Above this many rows, an UPDATE or DELETE bumps the table and its wildcards instead.
MAX_ROWS = 1000

_UNKNOWN = object()


def prepare(using: str) -> None:
    """Before a write statement: let the log triggers tell us the ids of the rows it logs."""
    from .. import log

    if log.is_active(using):
        conn = connections[using]
        log.prepare_notices(conn)
        log.clear_notices(conn)


def bump(tags: Iterable[str], using: str, tables: Collection[str] | None = None) -> None:
    """Invalidate ``tags``, the whole effect of a statement on ``tables`` (``None``: any).

    The log rows the triggers wrote for those tables are handed to the bump as marks (applied
    by it); when the tables have no trigger, ``invalidate_tags`` logs the tags itself.
    """
    from .. import log
    from ..invalidation import invalidate_tags

    marks: list[int] = []
    tags = set(tags)
    if log.is_active(using):
        conn = connections[using]
        triggered = log.triggers.triggered_tables(using)
        if tables is not None and tables and all(t in triggered for t in tables):
            marks = log.take_marks(conn, tables, tags, using)
    # Logged by the triggers only if their rows were seen and are covered by these tags;
    # otherwise freshcache logs the tags itself (the triggers' rows, if any, stay for relays).
    invalidate_tags(tags, using=using, marks=marks, logged=bool(marks))


def _needs_transaction(info: TableInfo, using: str) -> bool:
    """True when freshcache must log this table's writes itself (no trigger): the log row and
    the write then commit together."""
    from .. import log

    return log.is_active(using) and info.name not in log.triggers.triggered_tables(using)


def _wrote(info: TableInfo) -> None:
    mark_uncacheable(f"wrote to {info.name}")


def _row_tags(
    info: TableInfo, using: str, columns: list[str], rows: Iterable[tuple[Any, ...]]
) -> set[str]:
    tags: set[str] = set()
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            kc = info.keyed.get(column)
            if kc is None:
                continue
            if value is _UNKNOWN:
                tags.add(info.wildcard(column, using))
                continue
            try:
                tags.add(info.tag(column, kc.normalize(value), using))
            except (TypeError, ValueError):
                tags.add(info.wildcard(column, using))
    return tags


def insert(compiler: Any, run: Callable[[], Any], returning_fields: Any) -> Any:
    query = compiler.query
    using = compiler.using
    info = registry().tables.get(query.get_meta().db_table)
    if info is None:
        return run()
    prepare(using)
    with _atomic(using) if _needs_transaction(info, using) else nullcontext():
        return _insert(query, using, info, run, returning_fields)


def _insert(
    query: Any, using: str, info: TableInfo, run: Callable[[], Any], returning_fields: Any
) -> Any:
    result = run()
    _wrote(info)
    tags = {info.table_tag(using)}
    on_conflict = getattr(query, "on_conflict", None)
    if on_conflict is not None and getattr(on_conflict, "name", "") == "UPDATE":
        bump(info.all_wildcards(using), using, [info.name])
        return result
    by_column = {f.column: f for f in query.fields}
    returned: dict[str, int] = {}
    if result and returning_fields:
        returned = {f.column: i for i, f in enumerate(returning_fields)}
    columns = list(info.keyed)
    rows = []
    for n, obj in enumerate(query.objs):
        row: list[Any] = []
        for column in columns:
            if column in returned and result and n < len(result):
                row.append(result[n][returned[column]])
            elif column in by_column:
                f = by_column[column]
                row.append(getattr(obj, f.attname))
            else:
                row.append(_UNKNOWN)
        rows.append(tuple(row))
    tags |= _row_tags(info, using, columns, rows)
    bump(tags, using, [info.name])
    return result


row_tags = _row_tags


def _literal_pks(query: Query, info: TableInfo) -> list[Any] | None:
    """The primary keys a write's WHERE names literally (``pk = v`` / ``pk IN (...)``)."""
    base = query.get_initial_alias()
    for node in _conjuncts(query.where):
        found = _keyed_lookup(node)
        if found is not None and found[0] == base and found[1] == info.pk_column:
            return found[2]
    return None


def _preselect(query: Query, using: str, info: TableInfo, columns: list[str]) -> list[Any] | None:
    """Lock and read the keyed columns of the rows ``query`` would write (``None``: too many)."""
    meta = query.get_meta()
    attnames = {f.column: f.attname for f in meta.local_concrete_fields}
    names = [attnames[c] for c in columns]
    q = query.chain(klass=Query)
    q.select_related = False
    q.clear_ordering(force=True)
    q.extra = {}
    q.clear_select_clause()
    if q.count_active_tables() > 1:
        # Lock only this table's rows: select them by primary key from a one-table query.
        inner = q
        inner.add_fields([meta.pk.attname])
        q = Query(query.model)
        q.add_filter("pk__in", inner)  # type: ignore[arg-type]
    q.add_fields(names)
    q.select_for_update = True
    q.set_limits(high=MAX_ROWS + 1)
    rows = [row for chunk in q.get_compiler(using).execute_sql(MULTI) for row in chunk]
    if len(rows) > MAX_ROWS:
        return None
    return rows


def _atomic(using: str) -> Any:
    conn = connections[using]
    return transaction.atomic(using=using) if conn.get_autocommit() else nullcontext()


def _rows_before(
    query: Query, using: str, info: TableInfo
) -> tuple[list[str], list[Any] | None]:
    """The keyed columns (primary key first) and the rows a statement is about to touch, read
    before it runs; ``None`` when the rows cannot be known (then wildcards are bumped)."""
    pk = info.pk_column
    columns = [c for c in info.keyed if c == pk] + [c for c in info.keyed if c != pk]
    if pk is not None and columns == [pk] and (pks := _literal_pks(query, info)) is not None:
        return columns, [(v,) for v in pks]
    if pk is not None:
        return columns, _preselect(query, using, info, columns)
    return columns, None


def update(compiler: Any, run: Callable[[], Any]) -> Any:
    query = compiler.query
    using = compiler.using
    info = registry().tables.get(query.get_meta().db_table)
    if info is None or not query.values:
        return run()  # excluded, or only multi-table parents change (each seen on its own)
    set_columns = {f.column: (f, val) for f, _, val in query.values}
    if set(set_columns) <= info.volatile:
        # Nothing to invalidate; the log row the trigger may still write (installed before the
        # column was declared volatile) is marked applied, so no relay bumps it either.
        prepare(using)
        result = run()
        bump((), using, [info.name])
        return result
    _wrote(info)
    prepare(using)
    with _atomic(using):
        columns, old = _rows_before(query, using, info)
        if old is None:
            result = run()
            bump(info.all_wildcards(using), using, [info.name])
            return result
        query.add_filter("pk__in", [row[0] for row in old])
        result = run()
        if not old:
            return result  # no row matched: nothing changed, nothing to invalidate
        tags = {info.table_tag(using)} | _row_tags(info, using, columns, old)
        tags |= _new_values(query, using, info, columns, old, set_columns)
        bump(tags, using, [info.name])
        return result


def _new_values(
    query: Query,
    using: str,
    info: TableInfo,
    columns: list[str],
    old: list[Any],
    set_columns: dict[str, tuple[Any, Any]],
) -> set[str]:
    changed = [c for c in columns if c in set_columns]
    if not changed or not old:
        return set()
    pk = columns[0]
    if pk in set_columns:
        return info.all_wildcards(using)  # rows renumbered: follow them by wildcard
    literal: dict[str, Any] = {}
    for column in changed:
        _, val = set_columns[column]
        if hasattr(val, "resolve_expression"):
            break
        literal[column] = val
    else:
        new_rows = [(row[0], *(literal[c] for c in changed)) for row in old]
        return _row_tags(info, using, [pk, *changed], new_rows)
    # An expression was assigned (F(), Case/When from bulk_update): read the result back; the
    # rows are locked by our UPDATE until we commit.
    meta = query.get_meta()
    attnames = {f.column: f.attname for f in meta.local_concrete_fields}
    q = Query(query.model)
    q.add_filter("pk__in", [row[0] for row in old])  # type: ignore[arg-type]
    q.add_fields([attnames[c] for c in [pk, *changed]])
    rows = [row for chunk in q.get_compiler(using).execute_sql(MULTI) for row in chunk]
    return _row_tags(info, using, [pk, *changed], rows)


def delete(compiler: Any, run: Callable[[], Any]) -> Any:
    query = compiler.query
    using = compiler.using
    info = registry().tables.get(query.get_meta().db_table)
    if info is None:
        return run()
    _wrote(info)
    prepare(using)
    with _atomic(using):
        columns, old = _rows_before(query, using, info)
        if old is None:
            result = run()
            bump(info.all_wildcards(using), using, [info.name])
            return result
        query.add_filter("pk__in", [row[0] for row in old])
        result = run()
        if not old:
            return result  # no row matched: nothing changed, nothing to invalidate
        bump({info.table_tag(using)} | _row_tags(info, using, columns, old), using, [info.name])
        return result
