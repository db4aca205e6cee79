"""PostgreSQL triggers that feed the invalidation log from every writer.

One statement-level trigger per operation (``INSERT``, ``UPDATE``, ``DELETE``, ``TRUNCATE``) on
every tracked table. With transition tables (PostgreSQL 10+, "Transition Relations" in the
``CREATE TRIGGER`` documentation) a statement costs one log row however many rows it touched: the
trigger records the table, the names of its *keyed columns* and their old and new values as JSON
arrays (``NULL`` past :data:`MAX_ROWS` rows: the relay then bumps the column wildcards), so a
``psql`` write produces the same tags as the ORM write would (``blog.comment?post_id=7``).

An ``UPDATE`` that changes nothing but volatile columns (``VOLATILE_FIELDS``) logs nothing, like
the ORM (up to :data:`MAX_ROWS` rows; a larger one is logged, with wildcards, rather than paying
for comparing every row; a relay bumps those wildcards once, whoever wrote it: the ORM cannot
tell that a ``BEFORE`` trigger set nothing else). Each log row wakes the relays (``NOTIFY
freshcache``, delivered at commit) and, for Django's own connections (``SET freshcache.notice =
on``), tells the writer the row's id in a ``NOTICE`` that arrives with the statement's result:
the writer's bump then marks the row applied, and no relay bumps it a second time. Functions are
``SECURITY DEFINER`` so that a role without rights on the log can still write to its tables:
the cache never makes a write fail.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from django.db import ProgrammingError, connections, transaction

from ..capture.tables import TableInfo, registry
from ..transactions import in_transaction

__all__ = ["MAX_ROWS", "TableStatus", "install", "status", "triggered_tables", "uninstall"]

logger = logging.getLogger("freshcache")

#: Past this many rows in one statement, a trigger records no values (the table's wildcards are
#: bumped instead), like the ORM capture's own limit.
MAX_ROWS = 1000
#: Past this many rows, the NOTICE to a Django writer carries no values: the writer then does
#: not claim the row, and a relay applies it (one extra miss for such large statements).
NOTICE_ROWS = 100
#: Bumped when the trigger body changes: ``status`` then reports installed triggers as outdated.
VERSION = 6
_OPS = (("ins", "INSERT", "REFERENCING NEW TABLE AS new_rows"),
        ("upd", "UPDATE", "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"),
        ("del", "DELETE", "REFERENCING OLD TABLE AS old_rows"),
        ("trunc", "TRUNCATE", ""))


@dataclass(frozen=True)
class TableStatus:
    """One tracked table: ``state`` is ``ok``, ``missing`` (some or all of its four triggers are
    absent or disabled), ``outdated`` (installed for other keyed or volatile columns, or by an
    older freshcache), ``not a table`` (a view) or ``no table`` (not migrated)."""

    table: str
    state: str
    columns: tuple[str, ...]


def _quote(conn: Any, name: str) -> str:
    return str(conn.ops.quote_name(name))


def _literal(text: str) -> str:
    """``text`` as an SQL string literal (column names may contain quotes)."""
    return "'" + text.replace("'", "''") + "'"


def function_name(table: str) -> str:
    """The trigger function of ``table`` (a digest: table names may be long or unusual)."""
    return "freshcache_log_" + hashlib.blake2b(table.encode(), digest_size=8).hexdigest()


def _columns(info: TableInfo) -> list[str]:
    pk = info.pk_column
    return [c for c in info.keyed if c == pk] + [c for c in info.keyed if c != pk]


def _fingerprint(info: TableInfo) -> str:
    volatile = ",".join(sorted(info.volatile))
    return f"freshcache v{VERSION} {','.join(_columns(info))} volatile={volatile}"


def _function_sql(conn: Any, info: TableInfo, log_table: str) -> str:
    cols = _columns(info)
    q = lambda c: "r." + _quote(conn, c)  # noqa: E731
    values = f"jsonb_build_array({', '.join(q(c) for c in cols)})" if cols else "'[]'::jsonb"

    def agg(side: str, n: str, out: str) -> str:
        # Count first: past MAX_ROWS the values are not wanted, and building a JSON array of
        # every row only to throw it away doubled the cost of a 10,000-row UPDATE.
        return (
            f"SELECT count(*) INTO {n} FROM {side};\n"
            f"      IF {n} <= {MAX_ROWS} THEN\n"
            f"        SELECT coalesce(jsonb_agg({values}), '[]'::jsonb) INTO {out} FROM {side} r;\n"
            f"      ELSE\n"
            f"        {out} := NULL;\n"
            f"      END IF;"
        )

    volatile = ""
    if info.volatile:
        drop = "ARRAY[" + ", ".join(_literal(c) for c in sorted(info.volatile)) + "]::text[]"
        # Nested, not ``TG_OP = 'UPDATE' AND NOT EXISTS (...)``: PL/pgSQL evaluates the whole
        # condition, and an INSERT or DELETE trigger has no old_rows or new_rows to read (the
        # write then failed with "relation old_rows does not exist"). Past MAX_ROWS the rows
        # are not compared (that cost 1.75x on a 10,000-row UPDATE): the row is logged with
        # wildcards, which a volatile-only bulk UPDATE then bumps once (from the ORM too).
        volatile = f"""
    IF TG_OP = 'UPDATE' AND n_new <= {MAX_ROWS} THEN
      IF NOT EXISTS (
          SELECT to_jsonb(r) - {drop} FROM new_rows r
          EXCEPT ALL SELECT to_jsonb(r) - {drop} FROM old_rows r) THEN
        RETURN NULL;  -- only volatile columns changed
      END IF;
    END IF;"""
    columns = _literal(",".join(cols))
    return f"""
CREATE OR REPLACE FUNCTION {function_name(info.name)}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fc$
DECLARE
  n_old bigint := 0;
  n_new bigint := 0;
  o jsonb := '[]'::jsonb;
  nw jsonb := '[]'::jsonb;
  lid bigint;
BEGIN
  IF to_regclass({_literal(log_table)}) IS NULL THEN
    RETURN NULL;  -- the log was dropped (migrated backwards): never make the write fail
  END IF;
  IF TG_OP = 'TRUNCATE' THEN
    o := NULL;
    nw := NULL;
  ELSE
    BEGIN
      IF TG_OP IN ('UPDATE', 'DELETE') THEN
        {agg("old_rows", "n_old", "o")}
      END IF;
      IF TG_OP IN ('UPDATE', 'INSERT') THEN
        {agg("new_rows", "n_new", "nw")}
      END IF;
      IF n_old = 0 AND n_new = 0 THEN
        RETURN NULL;
      END IF;{volatile}
    EXCEPTION WHEN OTHERS THEN
      -- A recorded column was renamed or dropped since install (a migration, a DBA): log the
      -- statement without values (the relay bumps the table's wildcards), never fail the write.
      o := NULL;
      nw := NULL;
      n_old := {MAX_ROWS} + 1;
    END;
  END IF;
  INSERT INTO {log_table} (created, source, tbl, op, columns, old, new, tags)
  VALUES (now(), 'trigger', TG_TABLE_NAME, TG_OP, {columns}, o, nw, '')
  RETURNING id INTO lid;
  IF pg_trigger_depth() = 1 AND current_setting('freshcache.notice', true) = 'on' THEN
    -- A Django writer: its own bump follows the COMMIT (relays may let it go first).
    PERFORM pg_notify('freshcache', 'django');
    -- The row's content travels with its id, so the writer claims it only if its own tags
    -- cover what the database really wrote (see log.take_marks).
    RAISE NOTICE 'freshcache-log % % %', lid, TG_TABLE_NAME,
      CASE WHEN n_old + n_new <= {NOTICE_ROWS}
        THEN jsonb_build_object('op', TG_OP, 'c', {columns}, 'o', o, 'n', nw)::text
        ELSE '' END;
  ELSE
    -- Nobody else will bump this row: relays apply it at once.
    PERFORM pg_notify('freshcache', 'outside');
  END IF;
  RETURN NULL;
END
$fc$"""


def _log_table(cursor: Any) -> str:
    cursor.execute("SELECT quote_ident(current_schema())")
    return f"{cursor.fetchone()[0]}.freshcache_log"


def _relkinds(cursor: Any, tables: list[str]) -> dict[str, str]:
    cursor.execute(
        "SELECT c.relname, c.relkind FROM pg_class c "
        "WHERE c.relname = ANY(%s) AND pg_table_is_visible(c.oid)",
        [tables],
    )
    return {name: kind for name, kind in cursor.fetchall()}


_NAMES = [f"freshcache_log_{suffix}" for suffix, _, _ in _OPS]


def _installed(cursor: Any) -> dict[str, str]:
    """table -> the fingerprint comment on its trigger function, for every table with all four
    triggers installed and enabled, calling one function. A table with only some of them (one
    dropped or disabled by hand, ``ENABLE REPLICA``) is left out: its writes are not all logged,
    so the ORM must not count on them, and ``status`` reports it missing."""
    cursor.execute(
        "SELECT c.relname, min(coalesce(obj_description(t.tgfoid, 'pg_proc'), '')) "
        "FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE t.tgname = ANY(%s) AND t.tgenabled IN ('O', 'A') AND pg_table_is_visible(c.oid) "
        "GROUP BY c.relname "
        "HAVING count(DISTINCT t.tgname) = %s AND count(DISTINCT t.tgfoid) = 1",
        [_NAMES, len(_NAMES)],
    )
    return dict(cursor.fetchall())


def _tracked() -> list[TableInfo]:
    return sorted(registry().tables.values(), key=lambda info: info.name)


def status(using: str = "default") -> list[TableStatus]:
    """The trigger state of every tracked table on database ``using`` (PostgreSQL only)."""
    conn = connections[using]
    if conn.vendor != "postgresql":
        return []
    infos = _tracked()
    with conn.cursor() as cursor:
        kinds = _relkinds(cursor, [i.name for i in infos])
        installed = _installed(cursor)
    out = []
    for info in infos:
        kind = kinds.get(info.name)
        if kind not in ("r", "p"):
            state = "not a table" if kind else "no table"
        elif info.name not in installed:
            state = "missing"
        elif installed[info.name] != _fingerprint(info):
            state = "outdated"
        else:
            state = "ok"
        out.append(TableStatus(info.name, state, tuple(_columns(info))))
    return out


def install(using: str = "default", *, lock_timeout: str = "5s") -> list[TableStatus]:
    """Create or replace the triggers on every tracked table of ``using``; return the states.

    Each table is done in its own short transaction with ``lock_timeout``, so installing on a
    live database waits for a table's lock at most that long (a table whose lock could not be
    taken stays ``missing``/``outdated``; run the command again). Re-run it after migrations that
    add models or change keyed columns (``migrate`` does it by itself: ``INSTALL_TRIGGERS``).
    """
    conn = connections[using]
    if conn.vendor != "postgresql":
        raise NotImplementedError(
            f"database {using!r} is {conn.vendor}: triggers exist for PostgreSQL only; "
            "on other databases freshcache logs the writes made through Django"
        )
    with conn.cursor() as cursor:
        log_table = _log_table(cursor)
        cursor.execute("SELECT to_regclass(%s)", [log_table])
        if cursor.fetchone()[0] is None:
            # Triggers writing to a missing table would make every write fail.
            raise ProgrammingError(
                f"the invalidation log table {log_table} does not exist on database "
                f"{using!r}: run `manage.py migrate` first"
            )
    for st in status(using):
        if st.state not in ("missing", "outdated"):
            continue
        info = registry().tables[st.table]
        try:
            with transaction.atomic(using=using), conn.cursor() as cursor:
                cursor.execute(f"SET LOCAL lock_timeout = '{lock_timeout}'")
                cursor.execute(_function_sql(conn, info, log_table))
                fn = function_name(info.name)
                cursor.execute(f"COMMENT ON FUNCTION {fn}() IS %s", [_fingerprint(info)])
                table = _quote(conn, info.name)
                for suffix, op, referencing in _OPS:
                    cursor.execute(f"DROP TRIGGER IF EXISTS freshcache_log_{suffix} ON {table}")
                    level = "FOR EACH STATEMENT"
                    cursor.execute(
                        f"CREATE TRIGGER freshcache_log_{suffix} AFTER {op} ON {table} "
                        f"{referencing} {level} EXECUTE FUNCTION {fn}()"
                    )
        except Exception as exc:  # a lock timeout, a permission: report, go on
            logger.warning("freshcache: could not install triggers on %s: %s", st.table, exc)
    triggered_tables.cache_clear()
    return status(using)


def uninstall(using: str = "default") -> int:
    """Drop every freshcache trigger and trigger function of ``using``; return how many tables."""
    conn = connections[using]
    if conn.vendor != "postgresql":
        return 0
    with transaction.atomic(using=using), conn.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE t.tgname = ANY(%s) AND pg_table_is_visible(c.oid)",
            [_NAMES],
        )
        tables = [row[0] for row in cursor.fetchall()]
        for table in tables:
            for suffix, _, _ in _OPS:
                cursor.execute(
                    f"DROP TRIGGER IF EXISTS freshcache_log_{suffix} ON {_quote(conn, table)}"
                )
            cursor.execute(f"DROP FUNCTION IF EXISTS {function_name(table)}()")
    triggered_tables.cache_clear()
    return len(tables)


class _TriggeredTables:
    """``triggered_tables(using)``: the tables whose writes the triggers log (cached)."""

    #: Seconds an answer is believed: triggers dropped or disabled by another process are
    #: noticed within this long (Django's writes are then logged by freshcache itself).
    TTL = 5.0

    def __init__(self) -> None:
        self._cache: dict[str, tuple[frozenset[str], float]] = {}

    def __call__(self, using: str) -> frozenset[str]:
        found = self._cache.get(using)
        if found is not None and time.monotonic() < found[1]:
            return found[0]
        conn = connections[using]
        if conn.vendor != "postgresql":
            tables: frozenset[str] = frozenset()
        else:
            try:
                from ..capture.patch import _internal

                def ask() -> frozenset[str]:
                    with conn.cursor() as cursor:
                        return frozenset(_installed(cursor))

                if in_transaction(conn):  # never abort the caller's transaction
                    with transaction.atomic(using=using):
                        tables = _internal(ask)
                else:
                    tables = _internal(ask)
            except Exception:
                return frozenset()  # not cached: asked again next time
        self._cache[using] = (tables, time.monotonic() + self.TTL)
        return tables

    def cache_clear(self) -> None:
        self._cache.clear()


triggered_tables = _TriggeredTables()
