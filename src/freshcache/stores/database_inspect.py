"""``DatabaseStore.inspect``: an entry's row as stored, with its tags' current versions
(diagnostics: two ``SELECT``\\ s, no lock, nothing changed)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from . import database_rows as rows
from .base import Stored

if TYPE_CHECKING:
    from .database import DatabaseStore

__all__ = ["inspect"]


def _text(value: Any) -> str | None:
    version = rows.version(value)
    if version is None:
        return None
    seq, nonce = version >> rows.SHIFT, version & rows.NONCE
    return str(seq) if not nonce else f"{seq}.{nonce}"


def inspect(store: DatabaseStore, key: str) -> Stored | None:
    def run(cursor: Any) -> Stored | None:
        cursor.execute(
            "SELECT payload, versions, expires FROM freshcache_entry WHERE key = %s", [key]
        )
        row = cursor.fetchone()
        if row is None:
            return None
        payload, recorded = rows.payload(row[0]), rows.parse(row[1])
        if payload is None or recorded is None:
            return None  # not what the store writes: a lookup misses it
        found = store._rows(cursor, list(recorded))
        expires = row[2]
        alive = rows.alive(expires)
        left = None if expires is None else (expires - time.time() if alive else 0.0)
        return Stored(
            payload,
            {tag: _text(v) or str(v) for tag, v in recorded.items()},
            {tag: _text(found.get(tag)) for tag in recorded},
            left,
        )

    return store._run(run)
