"""Writes through a migration's historical model (issue 9, item 1).

``migrate`` on a fresh database runs ``shapes_app`` 0002, a data migration written for the
schema of 0001: it creates, updates (``update()``, ``save()``, ``update_fields``,
``bulk_update``) and deletes (``delete()`` of a queryset and of an instance, with a cascade over
the self-referencing ``parent``) rows through ``apps.get_model("shapes_app", "Page")``, which
lacks the keyed columns ``locale_id`` and ``code`` that 0003 adds to the current model, from
which freshcache's registry is built. It used to stop with ``KeyError: 'locale_id'``.

The same model's writes, checked for freshness on every write path, are the ``historical_model``
shape of test_model_shapes.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

import psycopg
import pytest
from django.conf import settings

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _connect(dbname: str) -> psycopg.Connection[Any]:
    db = settings.DATABASES["default"]
    return psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=dbname, autocommit=True
    )


def test_migrate_on_a_fresh_database_writes_through_the_historical_model(db: None) -> None:
    # (``db``: the suite's fixtures expect the test database to be set up.)
    name = f"fc_fresh_{uuid.uuid4().hex[:12]}"
    with _connect("postgres") as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.shapes_app.fresh_db_settings",
            "SHAPES_FRESH_DB": name,
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        }
        proc = subprocess.run(
            [sys.executable, "-m", "django", "migrate", "--noinput"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        # Every write of the data migration was understood: no fallback to the whole table.
        assert "a write through" not in proc.stderr, proc.stderr[-3000:]
        with _connect(name) as conn:
            rows = conn.execute("SELECT title FROM shapes_app_page").fetchall()
            applied = conn.execute(
                "SELECT name FROM django_migrations WHERE app = 'shapes_app' ORDER BY id"
            ).fetchall()
        assert sorted(title for (title,) in rows) == ["first", "last", "root", "second"]
        assert [n for (n,) in applied] == ["0001_initial", "0002_page_data", "0003_page_locale"]
    finally:
        with _connect("postgres") as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
