"""The invalidation log: every committed write, durable in the project's database.

A write and its invalidation commit together or not at all: on PostgreSQL, triggers on every
tracked table add a row to ``freshcache_log`` inside the writing statement (``triggers.py``), for
every writer (the ORM, ``psql``, a cron job in another language, ``ON DELETE CASCADE``); where a
table has no trigger (SQLite, or triggers not installed), freshcache adds the row itself, in the
writing transaction, for writes made through Django. ``invalidate()`` with hand-named tags adds a
row too.

Writes made through Django keep their fast path: the tags are bumped right after commit, before
the write returns, and the bump *marks* the log rows it stands for (``stores/base.py``, point 5).
A relay (``relay.py``) applies every row no bump marked (a failed bump, a process killed between
COMMIT and its bump, a write from outside Django) and deletes applied rows. No invalidation
depends on one process staying alive or one store staying reachable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable
from typing import Any

from django.db import DatabaseError, connections, transaction

from ..conf import get_settings
from ..transactions import in_transaction

__all__ = [
    "active_alias",
    "decode",
    "is_active",
    "prepare_notices",
    "take_marks",
    "triggers",
    "write_row",
]

logger = logging.getLogger("freshcache")

_NOTICES = "_freshcache_notices"
_NOTICE_READY = "_freshcache_notice_ready"
_PREFIX = "freshcache-log "


def active_alias() -> str | None:
    """The alias of the log database, or ``None`` when the log is off (``LOG_DATABASE``)."""
    return get_settings().log_database


def is_active(using: str) -> bool:
    """True if writes on database ``using`` are logged: it is the log database, the log table
    exists, and either it is PostgreSQL (triggers see outside writes) or a store is shared."""
    if using != get_settings().log_database or not ready(using):
        return False
    if connections[using].vendor == "postgresql":
        return True
    from ..stores import all_stores

    return any(store.shared for store in all_stores())


_ready: dict[str, tuple[bool, float]] = {}
#: A missing log table is looked for again after this long (seconds): processes started before
#: ``migrate`` created it start logging without a restart.
RECHECK_SECONDS = 30.0


def ready(using: str) -> bool:
    """True once the log table exists on ``using`` (checked once per process; a negative answer
    is checked again after :data:`RECHECK_SECONDS`; ``migrate`` resets it)."""
    found = _ready.get(using)
    if found is not None and (found[0] or time.monotonic() < found[1]):
        return found[0]
    try:
        from ..capture.patch import _internal

        conn = connections[using]
        exists = bool(_internal(lambda: "freshcache_log" in conn.introspection.table_names()))
    except Exception:
        return False
    _ready[using] = (exists, time.monotonic() + RECHECK_SECONDS)
    return exists


def reset() -> None:
    """Forget cached facts about the log (after ``migrate`` or a trigger install)."""
    from .relay import get_relay
    from .triggers import triggered_tables

    _ready.clear()
    triggered_tables.cache_clear()
    get_relay()._off = None


def write_row(tags: Collection[str], using: str) -> int | None:
    """Add a row naming ``tags`` to the log in ``using``'s current transaction; return its id.

    Runs in a savepoint inside a transaction, so a failure (reported once per call, at WARNING)
    never aborts the caller's write. ``None`` when the row could not be written.
    """
    from ..capture.patch import _internal

    conn = connections[using]
    text = "\n".join(sorted(tags))

    def run() -> int:
        with conn.cursor() as cursor:
            if conn.features.can_return_columns_from_insert:
                cursor.execute(
                    "INSERT INTO freshcache_log (created, source, tbl, op, columns, tags) "
                    "VALUES (CURRENT_TIMESTAMP, 'django', '', 'TAGS', '', %s) RETURNING id",
                    [text],
                )
                return int(cursor.fetchone()[0])
            cursor.execute(
                "INSERT INTO freshcache_log (created, source, tbl, op, columns, tags) "
                "VALUES (CURRENT_TIMESTAMP, 'django', '', 'TAGS', '', %s)",
                [text],
            )
            return int(cursor.lastrowid)

    try:
        if in_transaction(conn):
            with transaction.atomic(using=using):
                return int(_internal(run))
        return int(_internal(run))
    except DatabaseError as exc:
        logger.warning("freshcache: could not write %d tag(s) to the log: %s", len(tags), exc)
        return None


# -- the writer learns the ids of the rows its statement logged ------------------------------


def prepare_notices(conn: Any) -> None:
    """Ask the triggers to tell this connection the ids of the log rows it writes.

    Once per database connection, before its first write (reads never pay for it). Only
    psycopg 3 is supported; elsewhere no ids are learned and relays bump those rows a second
    time (extra misses, never a lost invalidation). A ``SET`` made inside a transaction that
    rolls back is undone: that connection then learns no ids until it is closed (again only
    extra misses).
    """
    if conn.vendor != "postgresql":
        return
    raw = getattr(conn, "connection", None)
    if raw is None:
        try:
            conn.ensure_connection()
        except DatabaseError:
            return
        raw = conn.connection
    if raw is None or getattr(raw, _NOTICE_READY, False) or not hasattr(raw, "add_notice_handler"):
        return
    notices: list[str] = []

    def handler(diag: Any) -> None:
        text = getattr(diag, "message_primary", None) or ""
        if text.startswith(_PREFIX):
            notices.append(text[len(_PREFIX) :])

    try:
        from ..capture.patch import _internal

        def run() -> None:
            with conn.cursor() as cursor:
                cursor.execute("SET freshcache.notice = 'on'")

        _internal(run)
    except DatabaseError:
        return
    raw.add_notice_handler(handler)
    setattr(raw, _NOTICES, notices)
    setattr(raw, _NOTICE_READY, True)


def take_marks(
    conn: Any,
    tables: Iterable[str] | None,
    tags: Collection[str] = (),
    using: str = "default",
) -> tuple[list[int], bool]:
    """The ids of the log rows the last statements on ``conn`` wrote that ``tags`` cover.

    The triggers send each row's content with its id (up to :data:`triggers.NOTICE_ROWS`
    rows). A row is claimed only when the writer's own ``tags`` cover every tag the row decodes
    to (a wildcard covers its column): the database may have written other values than the ORM
    assigned (a ``BEFORE`` trigger, a generated column), and a claimed row is never applied by a
    relay. Rows of other tables (a cascade or a trigger defined in SQL), rows too large to be
    sent, and rows not covered are left to the relays. ``tables=None``: any table.

    Return the claimed ids, and whether any row of ``tables`` was seen at all (the statement is
    then in the log already: no row of freshcache's own is needed).
    """
    raw = getattr(conn, "connection", None)
    notices: list[str] | None = getattr(raw, _NOTICES, None)
    if not notices:
        return [], False
    wanted = None if tables is None else set(tables)
    have = set(tags)
    marks = []
    seen = False
    for text in notices:
        ident, _, rest = text.partition(" ")
        table, _, payload = rest.partition(" ")
        if not ident.isdigit() or (wanted is not None and table not in wanted):
            continue
        seen = True
        if not payload:
            continue
        try:
            content = _json(payload)
            row = {
                "id": int(ident), "source": "trigger", "tbl": table, "op": content["op"],
                "columns": content["c"], "old": content["o"], "new": content["n"],
            }
        except (ValueError, KeyError, TypeError):
            continue
        if _covered(decode(row, using), have):
            marks.append(int(ident))
    notices.clear()
    return marks, seen


def _covered(needed: set[str], have: set[str]) -> bool:
    for tag in needed:
        if tag in have:
            continue
        base, sep, _ = tag.rpartition("=")
        if sep and base + "=*" in have:
            continue
        base, sep, _ = tag.rpartition(":")
        if sep and "?" not in base and base + ":*" in have:
            continue
        return False
    return True


def clear_notices(conn: Any) -> None:
    """Forget notices of statements whose tags nobody bumps here (the relays will)."""
    raw = getattr(conn, "connection", None)
    notices: list[str] | None = getattr(raw, _NOTICES, None)
    if notices:
        notices.clear()


# -- what a row invalidates --------------------------------------------------------------------


def decode(row: dict[str, Any], using: str) -> set[str]:
    """The tags of one log row. A row that cannot be understood invalidates more, never less:
    its table's wildcards, or every tracked table's when even the table is unknown. Never
    raises: a row that made the relay fail would block every later row behind it."""
    from ..capture.tables import registry, unknown_table_tag

    reg = registry()
    source = row.get("source")
    if source == "django":
        return {t for t in str(row.get("tags") or "").split("\n") if t}
    table = row.get("tbl") or ""
    info = reg.tables.get(table) if isinstance(table, str) else None
    if source != "trigger" or not table or not isinstance(table, str):
        logger.warning(
            "freshcache: log row %s (source %r, table %r) is not understood; invalidating "
            "every table",
            row.get("id"),
            source,
            table,
        )
        return _everything(reg, using)
    if info is None:
        return set() if table in reg.excluded else {unknown_table_tag(table, using)}
    try:
        return _trigger_tags(row, info, using)
    except Exception as exc:  # a malformed row (hand-written, or from a future version)
        logger.warning("freshcache: log row %s of %s is malformed (%s)", row.get("id"), table, exc)
        return info.all_wildcards(using)


#: The operations a trigger logs; a row naming another one is not understood.
_OPS = frozenset({"INSERT", "UPDATE", "DELETE", "TRUNCATE"})


def _trigger_tags(row: dict[str, Any], info: Any, using: str) -> set[str]:
    """The tags of a well-formed trigger row; raises ``ValueError`` on any other shape."""
    from ..capture.writes import row_tags

    op = row.get("op")
    if op not in _OPS:
        raise ValueError(f"unknown operation {op!r}")
    columns = [c for c in str(row.get("columns") or "").split(",") if c]
    old, new = _json(row.get("old")), _json(row.get("new"))
    if op == "TRUNCATE" or old is None or new is None:
        return set(info.all_wildcards(using))  # the rows are not known
    rows: list[tuple[Any, ...]] = []
    for side in (old, new):
        if not isinstance(side, list):
            raise ValueError("old and new must be JSON arrays of rows")
        for r in side:
            # Each row is an array of scalars, one per recorded column (a keyed column is an
            # integer, a string, a UUID or a boolean: JSON numbers, strings and booleans).
            if not isinstance(r, list) or len(r) != len(columns):
                raise ValueError("a row is not an array as wide as its columns")
            if not all(v is None or isinstance(v, str | int) for v in r):
                raise ValueError("a value is not a string, an integer or a boolean")
            rows.append(tuple(r))
    tags = {info.table_tag(using)}
    tags |= row_tags(info, using, columns, rows)
    # A keyed column the trigger did not record (installed before the column was keyed):
    # its readers are reached through the wildcard. A recorded column this process does not
    # know as keyed (newer code installed the trigger: a rolling deploy): likewise.
    tags |= {info.wildcard(c, using) for c in info.keyed if c not in columns}
    tags |= {info.wildcard(c, using) for c in columns if c not in info.keyed}
    return tags


def _json(value: Any) -> Any:
    """A JSON column as Python: Django's cursor returns it as text, psycopg's as values."""
    if isinstance(value, str | bytes | bytearray):
        import json

        return json.loads(value)
    return value


def _everything(reg: Any, using: str) -> set[str]:
    tags: set[str] = set()
    for info in reg.tables.values():
        tags |= info.all_wildcards(using)
    return tags


from . import triggers  # noqa: E402  (``log.triggers`` for the write path)
