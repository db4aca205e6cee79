"""Leases (single flight) of the database store: rows of ``freshcache_lease``, not locks.

A lease's expiry is read from the database's own clock (no skew between application servers);
taking one is a single upsert that succeeds only over an expired row. No connection is held
while a lease is. Inside an open transaction (``ATOMIC_REQUESTS``) no lease is taken: the row
would stay invisible to other connections until COMMIT while locking them out of it, so those
computations run as without single flight.

Garbage: a lease row whose expiry is missing, not a number or further ahead than any lease
lasts (``conf.MAX_LEASE_SECONDS``) counts as expired.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from ..conf import MAX_LEASE_SECONDS
from ..transactions import in_transaction
from .base import NO_LEASE

if TYPE_CHECKING:
    from .database import DatabaseStore

__all__ = ["acquire", "release"]

#: The database's clock, in seconds since the epoch, per vendor that supports leases.
_NOW = {
    "postgresql": "extract(epoch from clock_timestamp())::float8",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}


def acquire(store: DatabaseStore, key: str, ttl: float) -> str | None:
    """:meth:`Store.acquire <freshcache.stores.base.Store.acquire>` for ``store``."""
    conn = store.connection
    if in_transaction(conn) or conn.vendor not in _NOW:
        return NO_LEASE  # see the module docstring
    token = secrets.token_hex(8)
    now = _NOW[conn.vendor]
    sql = (
        "INSERT INTO freshcache_lease (key, token, expires) "
        f"VALUES (%s, %s, {now} + %s) ON CONFLICT (key) DO UPDATE SET "
        "token = excluded.token, expires = excluded.expires "
        f"WHERE freshcache_lease.expires IS NULL OR freshcache_lease.expires < {now} "
        f"OR freshcache_lease.expires > {now} + %s "
        "RETURNING token"
    )

    def run(cursor: Any) -> str | None:
        cursor.execute(sql, [key, token, float(ttl), float(MAX_LEASE_SECONDS)])
        row = cursor.fetchone()
        return token if row is not None and row[0] == token else None

    return store._run(run)


def release(store: DatabaseStore, key: str, token: str) -> None:
    """:meth:`Store.release <freshcache.stores.base.Store.release>` for ``store``."""
    if not token or in_transaction(store.connection):
        return

    def run(cursor: Any) -> None:
        cursor.execute("DELETE FROM freshcache_lease WHERE key = %s AND token = %s", [key, token])

    store._run(run)
