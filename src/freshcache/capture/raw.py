"""SQL that did not come from the ORM compiler: ``cursor.execute()`` and ``QuerySet.raw()``.

Raw SQL cannot be analysed for predicates, so it is tracked per table:

* a read (``SELECT``/``WITH``/``VALUES``...) inside a scope depends on the table tag of every
  tracked table whose name appears in it, and on a ``db_table:<name>`` tag for each name after
  ``FROM``/``JOIN`` that no model maps; ``FOR UPDATE``/``FOR SHARE`` makes the scope uncacheable;
* a write (``INSERT``, ``UPDATE``, ``DELETE``, ``TRUNCATE``, ``MERGE``, ``COPY``, anywhere in the
  statement, data-modifying CTEs included) bumps, for every table it names as a target, the table
  tag and every column wildcard (so predicate readers are invalidated too; rows are unknown). A
  write whose target cannot be named bumps every tracked table. Raw writes are never treated as
  volatile.
* DDL (``CREATE``/``ALTER``/``DROP``) and session statements (``SET``, ``SAVEPOINT``...) bump
  nothing: schema changes are deployments, not data writes (see docs/capture.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..scope import current_scope, mark_uncacheable
from . import trace
from .sql import Statement, parse
from .tables import Registry, registry, unknown_table_tag
from .writes import bump, prepare

__all__ = ["execute", "read_tags", "write_tags"]


def _text(sql: Any, context: Any) -> str | None:
    if isinstance(sql, str):
        return sql
    if isinstance(sql, bytes):
        return sql.decode("utf-8", "replace")
    as_string = getattr(sql, "as_string", None)  # psycopg.sql.Composable
    if as_string is not None:
        try:
            return str(as_string(context["connection"].connection))
        except Exception:
            return None
    return None


def read_tags(st: Statement, reg: Registry, using: str) -> set[str]:
    tags = {reg.tables[name].table_tag(using) for name in st.refs if name in reg.tables}
    tags |= {unknown_table_tag(n, using) for n in st.from_names if not reg.known(n)}
    return tags


def write_tags(st: Statement | None, reg: Registry, using: str) -> set[str]:
    if st is None or st.unknown_target or not st.targets:
        tags: set[str] = set()
        for info in reg.tables.values():
            tags |= info.all_wildcards(using)
        return tags
    tags = set()
    for name in st.targets:
        target = reg.tables.get(name)
        if target is not None:
            tags |= target.all_wildcards(using)
        elif name not in reg.excluded:
            tags.add(unknown_table_tag(name, using))
    return tags


def execute(execute: Callable[..., Any], sql: Any, params: Any, many: bool, context: Any) -> Any:
    """Run one raw statement, then record what it read or bump what it wrote."""
    text = _text(sql, context)
    st = parse(text) if text is not None else None
    if st is not None and not st.writes:
        scope = current_scope()
        if scope is None or not st.reads:
            return execute(sql, params, many, context)
        result = execute(sql, params, many, context)
        tags = read_tags(st, registry(), context["connection"].alias)
        scope.add(tags)
        if trace.tracing:  # the debug-toolbar panel (trace.py)
            trace.record([text or ""], tags, scope.name)
        if st.locks:
            scope.refuse("raw SQL locks rows (FOR UPDATE / FOR SHARE)")
        return result
    if st is not None and st.ddl:
        return execute(sql, params, many, context)
    using = context["connection"].alias
    prepare(using)
    result = execute(sql, params, many, context)
    tags = write_tags(st, registry(), using)
    if tags:
        mark_uncacheable("raw SQL wrote to the database")
        known = st is not None and not st.unknown_target and st.targets
        bump(tags, using, set(st.targets) if known and st is not None else None)
    return result
