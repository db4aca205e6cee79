"""The global sequence of the database store, and how a broken one is restarted.

On PostgreSQL it is a native sequence (``freshcache_seq``): no lock, no contention, and it cannot
hold garbage. On SQLite it is the ``global`` row of ``freshcache_sequence``: writers serialize on
it, which SQLite does anyway. That row may be missing (``manage.py flush`` deletes it with every
other row) or hold what the store did not write; its old value is then unknown, so it restarts
above every tag version with every entry deleted (:func:`restart`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from . import database_rows as rows
from .database_rows import SHIFT

if TYPE_CHECKING:
    from .database import DatabaseStore

__all__ = ["RESTART_GAP", "current", "restart", "step"]

# The store's own logger: the restart is the database store's warning.
logger = logging.getLogger("freshcache.stores.database")

#: A SQLite sequence row restarted after it was lost or corrupted jumps this far above the
#: highest tag version, past any snapshot a computation in flight may hold.
RESTART_GAP = 1 << 20
#: Tag versions whose sequence part is beyond this are not taken into account by that restart.
_MAX_SEQ = 1 << 40


def current(store: DatabaseStore, cursor: Any) -> int:
    """The sequence's position (0 before its first step)."""
    if store.connection.vendor == "postgresql":
        cursor.execute("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM freshcache_seq")
        return int(cursor.fetchone()[0])
    cursor.execute("SELECT value FROM freshcache_sequence WHERE name = 'global'")
    row = cursor.fetchone()
    value = rows.integer(row[0]) if row else None
    if value is None or value < 0:
        return restart(store, cursor, corrupt=row is not None)
    return value


def step(store: DatabaseStore, cursor: Any) -> int:
    """Advance the sequence by one; return its new position."""
    if store.connection.vendor == "postgresql":
        cursor.execute("SELECT nextval('freshcache_seq')")
        return int(cursor.fetchone()[0])
    sql = (
        "UPDATE freshcache_sequence SET value = value + 1 "
        "WHERE name = 'global' AND typeof(value) = 'integer' AND value >= 0"
    )
    cursor.execute(sql)
    if cursor.rowcount != 1:
        current(store, cursor)  # restarts it
        cursor.execute(sql)
    cursor.execute("SELECT value FROM freshcache_sequence WHERE name = 'global'")
    return int(cursor.fetchone()[0])


def restart(store: DatabaseStore, cursor: Any, *, corrupt: bool) -> int:
    """Rebuild a SQLite sequence row that is missing or not an integer (see the module docstring).

    Its old value is unknown, so the new one must exceed every version handed out: start
    above the highest tag version, and delete every entry (an entry may record a version of
    a tag whose row is gone). A missing row (``manage.py flush`` deletes it with every other
    row) is silent; a row holding garbage is logged. PostgreSQL's native sequence cannot
    hold garbage.
    """
    cursor.execute("SELECT version FROM freshcache_tag")
    seqs = (v >> SHIFT for v in map(rows.version, (r[0] for r in cursor.fetchall())) if v)
    value = max((q for q in seqs if q <= _MAX_SEQ), default=0) + RESTART_GAP
    cursor.execute("DELETE FROM freshcache_sequence WHERE name = 'global'")
    cursor.execute("INSERT INTO freshcache_sequence (name, value) VALUES ('global', %s)", [value])
    cursor.execute("DELETE FROM freshcache_entry")
    if corrupt:
        logger.warning(
            "freshcache store %r: the sequence row of freshcache_sequence was not an integer; "
            "restarted it at %d and deleted every entry",
            store.name,
            value,
        )
    return value
