"""Every monkey patch freshcache applies, and its exact inverse.

Django offers no documented hook that sees both a query's structure and its execution:
``connection.execute_wrapper`` sees SQL text only, model signals miss ``QuerySet.update()``,
``bulk_*`` and raw SQL (the gap peers' invalidation bugs came through, see docs/capture.md). So:

* ``SQLCompiler.execute_sql`` (reads; ``SQLDeleteCompiler`` inherits it, so deletes are routed
  from here), ``SQLInsertCompiler.execute_sql`` and ``SQLUpdateCompiler.execute_sql`` are
  wrapped. Every ORM statement, whichever public API issued it (``save``, ``delete`` with its
  cascades, ``update``, ``bulk_*``, m2m managers, ``get_or_create``...), passes through them.
* ``ModelIterable.__iter__``, ``RawModelIterable.__iter__`` and ``QuerySet._fetch_all`` stamp
  the instances and querysets they produce with the read generation taken before their query
  ran (``watermark.py``): how old they are when handed to a fragment or ``@cached`` call.
* The documented ``execute_wrapper`` hook is installed on every connection (the
  ``connection_created`` signal and the connections already open). It hands the SQL of ORM
  statements to the wrapped compiler that issued them, and treats every other statement
  (``cursor.execute()``, ``QuerySet.raw()``) as raw SQL.

``unpatch()`` restores the original attributes (or deletes the ones that were inherited) and
removes the wrapper from every connection.

What runs around the user's statement is bookkeeping and must never change its outcome: the
write handlers guard themselves (``writes.py``); here, a failure to analyse a read makes the
computation uncacheable, and a failure around a raw statement bumps every tracked table. Each
logs one WARNING per kind; the statement's own errors propagate unchanged and it runs once.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import DatabaseError, connections
from django.db.backends.signals import connection_created
from django.db.models import query as model_query
from django.db.models.sql import compiler as sql_compiler
from django.db.models.sql.constants import GET_ITERATOR_CHUNK_SIZE, MULTI, SINGLE

from .. import watermark
from ..conf import get_settings
from ..scope import current_scope, mark_uncacheable
from . import raw, reads, replicas, trace, writes
from .tables import registry

__all__ = ["is_patched", "patch", "unpatch"]

logger = logging.getLogger("freshcache")


class _Capture:
    """Set while a wrapped compiler runs: collects its SQL (``sqls is None``: ignore)."""

    __slots__ = ("sqls",)

    def __init__(self, sqls: list[str] | None) -> None:
        self.sqls = sqls


_INTERNAL = _Capture(None)
_active: contextvars.ContextVar[_Capture | None] = contextvars.ContextVar(
    "freshcache_capture", default=None
)

_originals: dict[tuple[type, str], Callable[..., Any] | None] = {}


@contextmanager
def internal() -> Iterator[None]:
    """Statements run inside are freshcache's own bookkeeping: not captured, not raw SQL."""
    token = _active.set(_INTERNAL)
    try:
        yield
    finally:
        _active.reset(token)


def execute_wrapper(
    execute: Callable[..., Any], sql: Any, params: Any, many: bool, context: Any
) -> Any:
    """The ``connection.execute_wrapper`` installed on every connection."""
    capture = _active.get()
    if capture is not _INTERNAL and get_settings().read_replicas:
        connection = context["connection"]
        if connection.alias in get_settings().read_replicas:
            replicas.before_read(connection)
    if capture is not None:
        if capture.sqls is not None:
            capture.sqls.append(sql if isinstance(sql, str) else str(sql))
        return execute(sql, params, many, context)
    token = _active.set(_INTERNAL)  # our own bookkeeping queries are not raw SQL
    try:
        return _raw(execute, sql, params, many, context)
    finally:
        _active.reset(token)


def _raw(execute: Callable[..., Any], sql: Any, params: Any, many: bool, context: Any) -> Any:
    """``raw.execute``, guarded: the statement runs once, whatever the bookkeeping does."""
    ran: list[Any] = []

    def statement(*args: Any) -> Any:
        if ran:
            raise RuntimeError("freshcache: a raw statement was about to run twice")
        ran.append(None)
        result = execute(*args)
        ran.append(result)
        return result

    try:
        return raw.execute(statement, sql, params, many, context)
    except Exception as exc:
        if ran and len(ran) < 2:
            raise  # the statement's own error
        if ran and isinstance(exc, DatabaseError):
            raise  # after the statement, in its transaction: it cannot commit anyway
        reason = f"unexpected {type(exc).__name__} in freshcache around raw SQL"
        result = ran[1] if ran else execute(sql, params, many, context)
        _bump_everything(context["connection"].alias, reason, exc)
        return result


def _bump_everything(using: str, reason: str, exc: Exception) -> None:
    """A raw statement that freshcache failed to follow may have written any table."""
    writes.warn_once("raw SQL", reason, "every tracked table is invalidated instead", exc)
    mark_uncacheable(reason)
    try:
        tags = raw.write_tags(None, registry(), using)
    except Exception:
        logger.exception("freshcache: could not name the tables after raw SQL")
        return
    try:
        writes.bump(tags, using, None)
    except DatabaseError:
        raise
    except Exception:
        logger.exception("freshcache: could not invalidate after raw SQL")


def _ensure_wrapper(connection: Any) -> None:
    if execute_wrapper not in connection.execute_wrappers:
        connection.execute_wrappers.append(execute_wrapper)


def _on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    _ensure_wrapper(connection)


def _internal(fn: Callable[[], Any]) -> Any:
    token = _active.set(_INTERNAL)
    try:
        return fn()
    finally:
        _active.reset(token)


def _execute_sql(
    self: Any,
    result_type: Any = MULTI,
    chunked_fetch: bool = False,
    chunk_size: int = GET_ITERATOR_CHUNK_SIZE,
) -> Any:
    original = _originals[(sql_compiler.SQLCompiler, "execute_sql")]
    assert original is not None

    def run() -> Any:
        return original(self, result_type, chunked_fetch, chunk_size)

    if isinstance(self, sql_compiler.SQLDeleteCompiler):
        _ensure_wrapper(self.connection)
        return _internal(lambda: writes.delete(self, run))
    if _active.get() is not None or isinstance(self, sql_compiler.SQLUpdateCompiler):
        # Issued while a write is handled (its pre-select, the UPDATE itself via super()), or
        # by our own bookkeeping: not a read of the computation.
        return run()
    scope = current_scope()
    if scope is None:
        return run()
    _ensure_wrapper(self.connection)
    capture = _Capture([])
    token = _active.set(capture)
    try:
        result = run()
    finally:
        _active.reset(token)

    def rows() -> Any:
        if result_type == MULTI and isinstance(result, list):
            return [row for chunk in result for row in chunk]
        if result_type == SINGLE:
            return [result] if result else []
        return None

    token = _active.set(_INTERNAL)
    try:
        if self.query.select_for_update:
            scope.refuse("select_for_update() locks rows: its result must not be reused")
        tags = reads.query_tags(self, capture.sqls or [], rows)
        scope.add(tags)
        if trace.tracing:  # the debug-toolbar panel (trace.py)
            trace.record(capture.sqls or [], tags, scope.name)
    except DatabaseError:
        raise
    except Exception as exc:
        # Tags that cannot be named must not be guessed: the result is served, never stored.
        reason = f"unexpected {type(exc).__name__} while analysing a read"
        scope.refuse(f"freshcache could not analyse a query ({type(exc).__name__})")
        what = f"a read of {_label(self.query.model)}"
        writes.warn_once(what, reason, "the computation is not stored", exc)
    finally:
        _active.reset(token)
    return result


def _label(model: Any) -> str:
    meta = getattr(model, "_meta", None)
    return str(getattr(meta, "label", model))


def _insert_execute_sql(self: Any, returning_fields: Any = None) -> Any:
    original = _originals[(sql_compiler.SQLInsertCompiler, "execute_sql")]
    assert original is not None
    _ensure_wrapper(self.connection)
    # A created instance holds what was written: as old as this moment (``watermark.py``),
    # bounded by a snapshot taken before it (``prime``: once per store and process).
    watermark.prime()
    read = watermark.Read(watermark.generation())
    for obj in getattr(self.query, "objs", ()):
        state = getattr(obj, "_state", None)
        if state is not None and watermark.ATTRIBUTE not in state.__dict__:
            state.__dict__[watermark.ATTRIBUTE] = read
    return _internal(
        lambda: writes.insert(self, lambda: original(self, returning_fields), returning_fields)
    )


def _update_execute_sql(self: Any, result_type: Any) -> Any:
    # Also reached, nested, for the multi-table parent updates the original issues: each is
    # handled on its own.
    original = _originals[(sql_compiler.SQLUpdateCompiler, "execute_sql")]
    assert original is not None
    _ensure_wrapper(self.connection)
    return _internal(lambda: writes.update(self, lambda: original(self, result_type)))


def _read(db: str) -> watermark.Read:
    """The read generation to stamp rows read now from database ``db`` with: the current one
    (taken before the query runs), or for a read replica the one its last passed replay check
    vouches for (``replicas.py``)."""
    if db in get_settings().read_replicas:
        return watermark.Read(replicas.read_generation(db))
    return watermark.Read(watermark.read_generation())


def _stamping(cls: type) -> Callable[..., Any]:
    def __iter__(self: Any) -> Any:
        read = _read(self.queryset.db)  # before the query runs
        for obj in _originals[(cls, "__iter__")](self):  # type: ignore[misc]
            obj._state.__dict__[watermark.ATTRIBUTE] = read
            yield obj

    return __iter__


def _fetch_all(self: Any) -> None:
    original = _originals[(model_query.QuerySet, "_fetch_all")]
    assert original is not None
    if self._result_cache is not None:
        return original(self)
    read = _read(self.db)
    original(self)
    self.__dict__[watermark.ATTRIBUTE] = read
    return None


_PATCHES: list[tuple[type, str, Callable[..., Any]]] = [
    (model_query.ModelIterable, "__iter__", _stamping(model_query.ModelIterable)),
    (model_query.RawModelIterable, "__iter__", _stamping(model_query.RawModelIterable)),
    (model_query.QuerySet, "_fetch_all", _fetch_all),
    (sql_compiler.SQLCompiler, "execute_sql", _execute_sql),
    (sql_compiler.SQLInsertCompiler, "execute_sql", _insert_execute_sql),
    (sql_compiler.SQLUpdateCompiler, "execute_sql", _update_execute_sql),
]


def is_patched() -> bool:
    return bool(_originals)


def patch() -> None:
    """Wrap the compilers and install the execute wrapper (idempotent)."""
    if _originals:
        return
    for cls, name, replacement in _PATCHES:
        _originals[(cls, name)] = cls.__dict__.get(name)
        original = getattr(cls, name)
        if _originals[(cls, name)] is None:
            _originals[(cls, name)] = original
            _originals[(cls, f"{name}:inherited")] = None
        setattr(cls, name, replacement)
    connection_created.connect(_on_connection_created, dispatch_uid="freshcache-capture")
    for conn in connections.all(initialized_only=True):
        _ensure_wrapper(conn)


def unpatch() -> None:
    """Undo :func:`patch` exactly."""
    if not _originals:
        return
    for cls, name, _ in _PATCHES:
        if (cls, f"{name}:inherited") in _originals:
            delattr(cls, name)
        else:
            setattr(cls, name, _originals[(cls, name)])
    _originals.clear()
    connection_created.disconnect(dispatch_uid="freshcache-capture")
    for conn in connections.all(initialized_only=True):
        while execute_wrapper in conn.execute_wrappers:
            conn.execute_wrappers.remove(execute_wrapper)
