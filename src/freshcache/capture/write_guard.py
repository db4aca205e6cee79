"""Bumping a write's tags without ever failing the write.

The user's statement runs exactly once (:class:`Statement`); if freshcache fails before it ran,
the statement runs as it is and the table's wildcards are bumped (:func:`guarded`); if computing
the tags fails after it ran, the wildcards are bumped instead (:func:`settle`). One WARNING per
model and reason says so (:func:`warn_once`). See :mod:`freshcache.capture.writes`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterable
from contextlib import nullcontext
from typing import Any

from django.db import DatabaseError, connections, transaction

from ..scope import mark_uncacheable
from ..tags import predicate_tag, table_tag
from ..transactions import in_transaction
from .tables import WILDCARD, ModelColumns, TableInfo, registry, unknown_table_tag

__all__ = [
    "Statement",
    "atomic",
    "bump",
    "guarded",
    "needs_transaction",
    "prepare",
    "safe_bump",
    "settle",
    "table_wildcards",
    "untracked",
    "warn_once",
    "warn_write",
    "wrote",
]

logger = logging.getLogger("freshcache")


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
    logged = False
    tags = set(tags)
    if log.is_active(using):
        conn = connections[using]
        triggered = log.triggers.triggered_tables(using)
        if tables is not None and tables and all(t in triggered for t in tables):
            marks, logged = log.take_marks(conn, tables, tags, using)
    # Logged by the triggers if their rows were seen (claimed when these tags cover them, else
    # left for the relays); otherwise freshcache logs the tags itself.
    invalidate_tags(tags, using=using, marks=marks, logged=logged)


def needs_transaction(info: TableInfo, using: str) -> bool:
    """True when freshcache must log this table's writes itself (no trigger): the log row and
    the write then commit together."""
    from .. import log

    return log.is_active(using) and info.name not in log.triggers.triggered_tables(using)


# -- never fail a write ------------------------------------------------------------------------

_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def warn_once(what: str, reason: str, consequence: str, exc: BaseException | None = None) -> None:
    """Log one WARNING per ``(what, reason)`` and process. ``exc`` (an unforeseen error) adds
    its traceback."""
    with _warned_lock:
        if (what, reason) in _warned:
            return
        _warned.add((what, reason))
    logger.warning("freshcache: %s: %s; %s", what, reason, consequence, exc_info=exc)


def warn_write(model: Any, reason: str, table: str, exc: BaseException | None = None) -> None:
    consequence = f"every cached read of table {table} is invalidated instead"
    warn_once(f"a write through {_label(model)}", reason, consequence, exc)


def _label(model: Any) -> str:
    try:
        return str(model._meta.label)
    except Exception:
        return repr(model)


class Statement:
    """The user's statement: runs at most once, remembers how far it got."""

    __slots__ = ("_run", "finished", "result", "started")

    def __init__(self, run: Callable[[], Any]) -> None:
        self._run = run
        self.started = False
        self.finished = False
        self.result: Any = None

    def __call__(self) -> Any:
        if self.started:  # a bug in freshcache; running a write twice would be worse
            raise RuntimeError("freshcache: a write statement was about to run twice")
        self.started = True
        self.result = self._run()
        self.finished = True
        return self.result


def guarded(compiler: Any, run: Callable[[], Any], handle: Callable[[Statement], Any]) -> Any:
    stmt = Statement(run)
    try:
        return handle(stmt)
    except Exception as exc:
        if stmt.started:
            # The statement's own error, unchanged; or, after it ran, a database error in the
            # same transaction (which then cannot commit the write either).
            raise
        return _fallback(compiler, stmt, exc)


def table_wildcards(model: Any, using: str) -> tuple[set[str], str]:
    """Every wildcard of ``model``'s table, and the table's name; never raises."""
    name = str(getattr(getattr(model, "_meta", None), "db_table", "") or "?")
    try:
        reg = registry()
        info = reg.tables.get(name)
        if info is not None:
            return info.all_wildcards(using), name
        if name in reg.excluded:
            return set(), name
        return {unknown_table_tag(name, using)}, name
    except Exception:
        pass
    try:  # without a registry: every column of the model stands in for the keyed ones
        concrete = model._meta.concrete_model or model
        tags = {table_tag(concrete, using)}
        for f in concrete._meta.local_concrete_fields:
            if f.column:
                tags.add(predicate_tag(concrete, f.column, WILDCARD, using))
        return tags, name
    except Exception:
        return {unknown_table_tag(name, using)}, name


def safe_bump(tags: Iterable[str], using: str, table: str) -> None:
    """``bump`` that raises only database errors (the transaction is then lost anyway)."""
    tags = set(tags)
    try:
        bump(tags, using, [table])
        return
    except DatabaseError:
        raise
    except Exception as exc:
        reason = f"unexpected {type(exc).__name__} while invalidating"
        warn_once(f"a write to table {table}", reason, "invalidating without the log", exc)
    from ..invalidation import invalidate_tags

    try:
        invalidate_tags(tags, using=using)
    except DatabaseError:
        raise
    except Exception:
        logger.exception("freshcache: could not invalidate %d tag(s) of table %s", len(tags), table)


def _fallback(compiler: Any, stmt: Statement, exc: Exception) -> Any:
    """Freshcache failed before the statement ran: run it as it is, bump the whole table."""
    using = compiler.using
    model = compiler.query.model
    tags, table = table_wildcards(model, using)
    if isinstance(exc, DatabaseError) and in_transaction(connections[using]):
        # Our pre-read failed inside the caller's transaction: the database aborted it, so the
        # statement cannot run in it any more (and would most likely fail the same way).
        reason = f"reading the rows before the write failed: {type(exc).__name__}"
        warn_once(f"a write through {_label(model)}", reason, "the transaction is aborted")
        raise exc
    try:
        mark_uncacheable(f"wrote to {table}")
        prepare(using)
    except Exception:
        pass
    with atomic(using):
        result = stmt()
        if tags:
            safe_bump(tags, using, table)
    if isinstance(exc, DatabaseError):
        reason = f"reading the rows before the write failed: {type(exc).__name__}"
        warn_write(model, reason, table)
    else:
        warn_write(model, f"unexpected {type(exc).__name__} in freshcache", table, exc)
    return result


def settle(target: ModelColumns, using: str, compute: Callable[[], set[str]]) -> None:
    """After the statement ran: bump the tags ``compute`` names, or, if computing them fails,
    the table's wildcards. Never raises but for a database error."""
    info = target.info
    try:
        wrote(info)
        tags = compute() | target.missing_wildcards(using)
    except DatabaseError:
        raise
    except Exception as exc:
        warn_write(target.model, f"unexpected {type(exc).__name__} in freshcache", info.name, exc)
        tags = info.all_wildcards(using)
    safe_bump(tags, using, info.name)


def atomic(using: str) -> Any:
    conn = connections[using]
    return transaction.atomic(using=using) if conn.get_autocommit() else nullcontext()


def untracked(compiler: Any, stmt: Statement) -> Any:
    """A write through a model the registry does not map: run it, then bump its table's
    wildcards (``db_table:<name>`` for a table no installed model maps, as raw SQL does);
    nothing for an ``EXCLUDE``d table."""
    using = compiler.using
    tags, table = table_wildcards(compiler.query.model, using)
    if not tags:
        return stmt()
    mark_uncacheable(f"wrote to {table}")
    prepare(using)
    result = stmt()
    safe_bump(tags, using, table)
    return result


def wrote(info: TableInfo, reason: str | None = None) -> None:
    """Mark the scope: a computation that wrote cannot be stored (``reason``: a more precise
    one than the table's name, ``writes.own_row_reason``)."""
    mark_uncacheable(reason or f"wrote to {info.name}")
