"""The index of published files (``freshcache_published``): which files depend on which edge
keys, and the row locks that keep a publisher and a writer from crossing (edge/publish.py).

Rows are always locked in one order, (token, key): a publisher locks every publication of its
path, a writer one publication at a time, so neither waits for the other in a cycle.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

from django.db import OperationalError, connections, transaction

__all__ = ["CHUNK", "DEADLOCK_RETRIES", "delete", "execute", "hold", "indexed"]

#: Rows per statement.
CHUNK = 500


def _internal(fn: Any) -> Any:
    from ..capture.patch import _internal as run

    return run(fn)


def execute(conn: Any, sql: str, params: Sequence[Any] = ()) -> Any:
    cursor = conn.cursor()
    _internal(lambda: cursor.execute(sql, list(params)))
    return cursor


def hold(conn: Any, relative: str, token: str, every_token: bool = False) -> set[str]:
    """Lock the index rows of publication ``(relative, token)`` (with ``every_token``: every
    publication of ``relative``, which the publisher replaces) until the transaction ends;
    return the tokens of the publications locked (``token`` among them if its rows remain).

    Always in one order, (token, key), so that publishers and writers never deadlock: two
    publishers of one path each holding its own rows and deleting the other's did, and the
    writer caught in that cycle gave up its deletion (a stale file until the queue's retry).
    On PostgreSQL with ``FOR UPDATE``; other databases take one writer at a time anyway.
    """
    which = "" if every_token else " AND token = %s"
    params = [relative] if every_token else [relative, token]
    lock = " FOR UPDATE"
    if conn.vendor != "postgresql":  # SQLite: a write takes the database's one write lock
        execute(conn, "UPDATE freshcache_published SET token = token WHERE path = %s" + which,
                 params).close()  # fmt: skip
        lock = ""
    cursor = execute(conn, "SELECT token FROM freshcache_published WHERE path = %s" + which
                      + " ORDER BY token, key" + lock, params)  # fmt: skip
    tokens = {str(row[0]) for row in cursor.fetchall()}
    cursor.close()
    return tokens


def delete(
    root: str,
    using: str,
    publications: Iterable[tuple[str, str]],
    keep: Callable[[str], bool] | None = None,
) -> list[str]:
    """Delete each ``(relative path, token)``'s index rows, then its file, in one transaction
    per publication (a publisher renaming that file holds the rows: this waits for it), unless
    ``keep(path)``, asked once the rows are held, says the file is current (the transaction is
    then rolled back); return the files deleted. Raises ``OSError`` (other than a missing file)
    and ``DatabaseError``."""
    deleted: list[str] = []
    for relative, token in publications:
        for attempt in range(DEADLOCK_RETRIES + 1):
            try:
                if _delete_one(root, using, relative, token, keep):
                    deleted.append(relative)
                break
            except OperationalError as exc:  # chosen as a deadlock's victim: the rows are back
                if attempt == DEADLOCK_RETRIES or "deadlock" not in str(exc).lower():
                    raise
    return deleted


#: How many times a deletion chosen as the victim of a deadlock is tried again.
DEADLOCK_RETRIES = 3


def _delete_one(
    root: str, using: str, relative: str, token: str, keep: Callable[[str], bool] | None
) -> bool:
    conn = connections[using]
    with transaction.atomic(using=using):
        hold(conn, relative, token)
        cursor = execute(conn, "DELETE FROM freshcache_published WHERE path = %s AND "
                          "token = %s", [relative, token])  # fmt: skip
        held = cursor.rowcount > 0
        cursor.close()
        if held and keep is not None and keep(relative):
            transaction.set_rollback(True, using=using)
            return False
        try:
            os.unlink(os.path.join(root, relative))
            return True
        except FileNotFoundError:
            return False


def indexed(using: str, keys: Collection[str]) -> list[tuple[str, str, str, str]]:
    """``(path, token, entry, store)`` of the publications indexed under any of ``keys``."""
    found: set[tuple[str, str, str, str]] = set()
    ordered = sorted(keys)
    conn = connections[using]
    for start in range(0, len(ordered), CHUNK):
        chunk = ordered[start : start + CHUNK]
        marks = ", ".join(["%s"] * len(chunk))
        cursor = execute(conn, "SELECT DISTINCT path, token, entry, store FROM "
                          f"freshcache_published WHERE key IN ({marks})", chunk)  # fmt: skip
        found.update(tuple(map(str, row)) for row in cursor.fetchall())  # type: ignore[misc]
        cursor.close()
    return sorted(found)
