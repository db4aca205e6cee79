"""Fixtures for the invalidation-log tests: the log as the relay reads it, a connection from
outside Django (psycopg, as ``psql`` or another service would write), the triggers put back.

Every test here runs on committed transactions (``transactional_db``): the triggers write in the
writing transaction and the log is read as a relay would, from committed rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection

from freshcache.log import decode, reset, triggers

COLUMNS = "id, source, tbl, op, columns, old, new, tags, created"


def outside_params() -> dict[str, Any]:
    """libpq parameters of the test database (pytest-django renamed it: settings_dict)."""
    s = connection.settings_dict
    return {
        "host": s["HOST"],
        "port": s["PORT"],
        "user": s["USER"],
        "dbname": s["NAME"],
    }


def log_rows() -> list[dict[str, Any]]:
    """Every row of the log, in id order, as the relay reads them (Django's cursor: JSON
    columns arrive as text)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {COLUMNS} FROM freshcache_log ORDER BY id")
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def decoded(rows: list[dict[str, Any]]) -> set[str]:
    tags: set[str] = set()
    for row in rows:
        tags |= decode(row, "default")
    return tags


def clear_log() -> None:
    with psycopg.connect(**outside_params(), autocommit=True) as conn:
        conn.execute("DELETE FROM freshcache_log")


@pytest.fixture
def outside(transactional_db: None) -> Iterator[psycopg.Connection[Any]]:
    """A psycopg connection to the test database that Django knows nothing of (autocommit)."""
    with psycopg.connect(**outside_params(), autocommit=True) as conn:
        yield conn


@pytest.fixture
def clean_log(transactional_db: None) -> Iterator[None]:
    """An empty log (the flush after the previous test truncated every table, and the triggers
    logged those TRUNCATEs)."""
    clear_log()
    yield


@pytest.fixture
def restore_triggers(transactional_db: None) -> Iterator[None]:
    """Put the suite's triggers back after a test that uninstalls or changes them."""
    yield
    if connection.vendor == "postgresql":
        triggers.install()
    reset()
