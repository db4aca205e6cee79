"""The tags one executed ORM query contributes to the open scope.

A query reads some tables; for each, the scope must depend on a set of tags such that any write
that could change the query's result bumps at least one of them. Three grades, finest first:

**Predicate.** The query's WHERE clause is a conjunction (``AND``, not negated) containing
``col = v``, ``col IN (v1, v2)`` or ``col IS NULL`` on a *keyed* column (tables.py) of an alias
that is the base table or joined with ``INNER JOIN``. Every row of that alias that can reach the
result satisfies the conjunct, so the result is a function of those rows alone (and of the other
aliases, which get their own tags). A writer bumps ``table?col=<value>`` for the old and the new
value of every row it touches, so any write that adds a row to, removes a row from, or changes a
row of that set bumps one of the reader's tags: ordering, slicing, ``DISTINCT``, aggregates and
``GROUP BY`` over those rows cannot escape this. A write whose rows are not known bumps the
column wildcard ``table?col=*``, which every predicate reader of the column also depends on. One
column per alias suffices (primary key preferred, then unique, then the fewest values).

**Covered join.** An alias X reached through a database-enforced foreign key from another alias
Y (``Y.fk = X.pk``: ``select_related``, a multi-table parent, the target side of an m2m through
table in ``tag.posts.all()``) contributes exactly one X row per Y row, the one ``Y.fk`` names.
If X is referenced nowhere but the select list (not in WHERE; not in ORDER BY when the query is
sliced, since then rows outside the slice would matter; no GROUP BY), and X's primary key is in
the rows fetched, the instance tags of the X rows fetched cover X: a changed X row bumps its
instance tag, a new X row cannot be named by an existing Y row (the foreign key is enforced),
and Y's changes are covered by Y's own tags. The join from Y to X must be from Y's side, or, when
X is the parent in the join tree (``tag.posts.all()`` joins posts to the through table), Y must
be INNER-joined so every result row has its Y row.

**Table.** Everything else: ORs and negations on their own, ranges, ``LIKE``, expressions,
subqueries (every table named inside one), reverse joins, unions, window functions,
``DISTINCT ON``, ``extra()``, raw SQL fragments, and chunked ``iterator()`` reads for joins.

Tables are named from the compiled SQL as well as from the query, and a table counts as precise
only if every reference to it in the SQL is a precise alias: a table also read in a subquery
gets its table tag.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from django.db.models.expressions import Col, RawSQL
from django.db.models.lookups import Lookup
from django.db.models.sql.constants import INNER
from django.db.models.sql.datastructures import Join
from django.db.models.sql.query import Query
from django.db.models.sql.where import ExtraWhere, WhereNode

from .sql import parse
from .tables import Registry, TableInfo, registry, unknown_table_tag

__all__ = ["query_tags"]

#: More literal values than this in one IN (...) and the alias falls back to its table tag.
MAX_VALUES = 200

Rows = Callable[[], Iterable[tuple[Any, ...]] | None]


def query_tags(compiler: Any, sqls: list[str], rows: Rows) -> set[str]:
    """Return the tags of ``compiler``'s query, which ran as ``sqls``; ``rows()`` gives its rows
    (``None`` when they are not available without consuming an iterator)."""
    if not sqls:
        return set()  # nothing reached the database (an empty IN, .none()): the result is fixed
    reg = registry()
    using = compiler.using
    query = compiler.query
    inner = getattr(query, "inner_query", None)
    top = inner if isinstance(inner, Query) else query
    refs: Counter[str] = Counter()
    from_names: set[str] = set()
    for sql in sqls:
        st = parse(sql)
        refs.update(st.refs)
        from_names |= st.from_names
    precise = _precise_aliases(compiler, top, reg, rows if top is query else None)
    tags: set[str] = set()
    aliases_by_table: dict[str, list[str]] = {}
    for alias, join in top.alias_map.items():
        # A join trimmed after it was set up stays in alias_map without appearing in the SQL;
        # joins added while compiling (select_related) appear with a zero refcount. A join
        # aliased "T3" is in the SQL if "T3" is; one aliased by its table name if the table is.
        if alias == join.table_name or top.alias_refcount.get(alias) or alias.lower() in refs:
            aliases_by_table.setdefault(join.table_name, []).append(alias)
    for table, count in refs.items():
        info = reg.tables.get(table)
        if info is None:
            continue
        aliases = aliases_by_table.get(table, [])
        if aliases and count <= len(aliases) and all(a in precise for a in aliases):
            for a in aliases:
                tags |= precise[a]
        else:
            tags.add(info.table_tag(using))
    for name in from_names:
        if not reg.known(name) and name not in top.alias_map:
            tags.add(unknown_table_tag(name, using))
    return tags


class _Walk:
    """Collect the aliases an expression tree references; note subqueries and raw SQL."""

    def __init__(self) -> None:
        self.aliases: set[str] = set()
        self.opaque = False

    def visit(self, node: Any) -> None:
        if node is None:
            return
        if isinstance(node, WhereNode):
            for child in node.children:
                self.visit(child)
        elif isinstance(node, Col):
            self.aliases.add(node.alias)
        elif isinstance(node, Query | RawSQL | ExtraWhere) or hasattr(node, "query"):
            self.opaque = True
        elif hasattr(node, "get_source_expressions"):
            for child in node.get_source_expressions():
                self.visit(child)
        elif isinstance(node, list | tuple):
            for child in node:
                self.visit(child)


def _conjuncts(node: Any) -> Iterator[Any]:
    if isinstance(node, WhereNode) and not node.negated and node.connector == "AND":
        for child in node.children:
            yield from _conjuncts(child)
    else:
        yield node


def _keyed_lookup(node: Any) -> tuple[str, str, list[Any]] | None:
    """``(alias, column, values)`` if ``node`` is ``col = v`` / ``col IN (...)`` / ``IS NULL``."""
    if not isinstance(node, Lookup) or type(node.lhs) is not Col:
        return None
    name = node.lookup_name
    rhs = node.rhs
    if name == "isnull":
        if rhs is not True:
            return None
        values: list[Any] = [None]
    elif name == "exact":
        if rhs is None or hasattr(rhs, "resolve_expression") or hasattr(rhs, "as_sql"):
            return None
        values = [rhs]
    elif name == "in":
        if not node.rhs_is_direct_value() or isinstance(rhs, str | bytes):
            return None
        try:
            values = [v for v in rhs if v is not None]
        except TypeError:
            return None
        if len(values) > MAX_VALUES or any(hasattr(v, "resolve_expression") for v in values):
            return None
    else:
        return None
    if node.contains_aggregate:
        return None
    column = node.lhs.target.column
    if column is None:
        return None
    return node.lhs.alias, column, values


def _precise_aliases(
    compiler: Any, top: Query, reg: Registry, rows: Rows | None
) -> dict[str, set[str]]:
    """Map each alias of ``top`` that can be tracked finer than its table to its tags."""
    if (
        top.combinator
        or top.distinct_fields
        or top.extra_tables  # extra(tables=...) cross-joins; extra(select=...) is harmless
        or any(getattr(a, "contains_over_clause", False) for a in top.annotations.values())
    ):
        return {}
    using = compiler.using
    infos: dict[str, TableInfo | None] = {}
    for alias, join in top.alias_map.items():
        if getattr(join, "filtered_relation", None) is not None:
            return {}
        infos[alias] = reg.tables.get(join.table_name)

    walk = _Walk()
    walk.visit(top.where)
    known: dict[str, dict[str, list[Any]]] = {}  # alias -> column -> values its rows have
    for node in _conjuncts(top.where):
        found = _keyed_lookup(node)
        if found is None:
            continue
        alias, column, values = found
        joined = top.alias_map.get(alias)
        if joined is None or getattr(joined, "join_type", None) not in (None, INNER):
            continue  # a condition on an outer join's columns may select the missing rows
        _constrain(known, infos, alias, column, values)
    _propagate(top, infos, known)
    best: dict[str, tuple[tuple[int, int], str, list[Any]]] = {}
    for alias, columns in known.items():
        info = infos[alias]
        assert info is not None
        for column, normalized in columns.items():
            rank = (info.keyed[column].rank, len(set(map(str, normalized))))
            if alias not in best or rank < best[alias][0]:
                best[alias] = (rank, column, normalized)
    precise: dict[str, set[str]] = {}
    for alias, (_, column, values) in best.items():
        info = infos[alias]
        assert info is not None
        tags = {info.tag(column, v, using) for v in values}
        tags.add(info.wildcard(column, using))
        precise[alias] = tags

    if rows is None or walk.opaque or top.group_by is not None:
        return precise
    covered = _covered(compiler, top, infos, precise, walk.aliases)
    if not covered:
        return precise
    fetched = rows()
    if fetched is None:
        return precise
    fetched = list(fetched)
    for alias, index in covered.items():
        info = infos[alias]
        assert info is not None and info.pk_column is not None
        kc = info.keyed[info.pk_column]
        tags = {info.wildcard(info.pk_column, using)}
        for row in fetched:
            value = row[index]
            if value is not None:
                tags.add(info.tag(info.pk_column, kc.normalize(value), using))
        precise[alias] = tags
    return precise


def _constrain(
    known: dict[str, dict[str, list[Any]]],
    infos: dict[str, TableInfo | None],
    alias: str,
    column: str,
    values: list[Any],
) -> bool:
    info = infos.get(alias)
    kc = info.keyed.get(column) if info is not None else None
    if kc is None or column in known.get(alias, {}):
        return False
    try:
        normalized = [kc.normalize(v) for v in values]
    except (TypeError, ValueError):
        return False
    known.setdefault(alias, {})[column] = normalized
    return True


def _propagate(
    top: Query, infos: dict[str, TableInfo | None], known: dict[str, dict[str, list[Any]]]
) -> None:
    """Carry constraints across join equalities.

    A join ``P.a = X.b`` means every X row in the result has ``X.b = P.a``; so if P's rows in the
    result have ``a IN V``, X's have ``b IN V`` (whatever the join type: an X row outside V can
    never match). The other way round holds only for an INNER-joined X, whose row every result
    row has. This makes ``Restaurant.objects.get(pk=1)`` precise on its parent table too, and
    ``comment.post`` columns read through ``values("post__title")`` precise on the post.
    """
    joins = [
        (j.parent_alias, j.join_cols[0][0], alias, j.join_cols[0][1], j.join_type == INNER)
        for alias, j in top.alias_map.items()
        if isinstance(j, Join) and len(j.join_cols) == 1 and j.parent_alias in top.alias_map
    ]
    changed = True
    while changed:
        changed = False
        for parent, pcol, child, ccol, inner in joins:
            if pcol in known.get(parent, {}):
                changed |= _constrain(known, infos, child, ccol, known[parent][pcol])
            if inner and ccol in known.get(child, {}):
                changed |= _constrain(known, infos, parent, pcol, known[child][ccol])


def _covered(
    compiler: Any,
    top: Query,
    infos: dict[str, TableInfo | None],
    precise: dict[str, set[str]],
    where_aliases: set[str],
) -> dict[str, int]:
    """Aliases covered by the instance tags of their fetched rows, with their pk's row index."""
    select = compiler.select or []
    pk_index: dict[str, int] = {}
    for i, item in enumerate(select):
        expr = item[0]
        if type(expr) is Col and expr.alias not in pk_index:
            info = infos.get(expr.alias)
            if info is not None and expr.target.column == info.pk_column:
                pk_index[expr.alias] = i
    candidates = {
        a for a in pk_index if a not in precise and a not in where_aliases and infos.get(a)
    }
    if not candidates:
        return {}
    if top.is_sliced:
        order = _order_aliases(compiler, top)
        if order is None:
            return {}
        candidates -= order
    edges: list[tuple[str, str]] = []  # (source, covered): source.fk names the covered row
    for alias, join in top.alias_map.items():
        if not isinstance(join, Join) or len(join.join_cols) != 1:
            continue
        parent = join.parent_alias
        parent_join = top.alias_map.get(parent)
        pinfo, cinfo = infos.get(parent), infos.get(alias)
        if parent_join is None or pinfo is None or cinfo is None:
            continue
        pcol, ccol = join.join_cols[0]
        if pinfo.fks.get(pcol) == (join.table_name, ccol):
            edges.append((parent, alias))
        if join.join_type == INNER and cinfo.fks.get(ccol) == (parent_join.table_name, pcol):
            edges.append((alias, parent))
    # Tracked on their own: every alias that is not a candidate, and every candidate that no
    # edge can cover (it gets its table tag). Coverage then spreads from them; a candidate
    # reachable only from another candidate that is itself uncovered keeps its table tag.
    targets = {target for _, target in edges}
    anchors = (set(top.alias_map) - candidates) | (candidates - targets)
    candidates &= targets
    covered: set[str] = set()
    changed = True
    while changed:
        changed = False
        for source, target in edges:
            if (
                target in candidates
                and target not in covered
                and (source in anchors or source in covered)
            ):
                covered.add(target)
                changed = True
    return {a: pk_index[a] for a in covered}


def _order_aliases(compiler: Any, top: Query) -> set[str] | None:
    """Aliases the ORDER BY references (``None`` if that cannot be worked out)."""
    before = top.alias_refcount.copy()
    try:
        order_by = compiler.get_order_by()
    except Exception:
        return None
    finally:
        top.reset_refcounts(before)
    walk = _Walk()
    for expr, _ in order_by:
        walk.visit(expr)
    return None if walk.opaque else walk.aliases
