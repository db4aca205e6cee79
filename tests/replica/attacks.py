"""Attacks on READ_REPLICAS, run in a child process by tests/test_replica_attacks.py
(``python -m tests.replica.attacks MODE``, settings ``tests.replica.attack_settings``). Prints one
JSON object: what each step served.

MODE:

* ``preloaded``: a view reads the (lagging) replica outside any cached computation, as a router
  sends every read there, and hands the instance to an ``@cached`` function (or a fragment);
* ``atomic``: the replay check's query on the primary fails inside the caller's ``atomic()``
  block on the primary (a role without EXECUTE on ``pg_current_wal_insert_lsn()``, as on
  services that do not offer it): the caller's write in that block must not fail;
* ``not_in_recovery``: the replica is not a standby (a logical replication subscriber, here a
  database on the primary's cluster that a "subscriber" writes with triggers off).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.replica.attack_settings")
django.setup()

import psycopg  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connections, transaction  # noqa: E402
from django.test import override_settings  # noqa: E402

from freshcache import cached  # noqa: E402
from freshcache.core import fetch  # noqa: E402
from freshcache.http.fragments import render_fragment  # noqa: E402
from tests.testapp.models import Item  # noqa: E402

_PRIMARY, _, _STANDBY = os.environ["FRESHCACHE_REPLICA_PORTS"].partition(",")


@cached
def shown(item: Item) -> int:
    return item.value


@cached
def replica_value(pk: int) -> int:
    return Item.objects.using("replica").get(pk=pk).value


@cached
def logical_value(pk: int) -> int:
    return Item.objects.using("logical").get(pk=pk).value


def replayed(value: int, pk: int) -> None:
    deadline = time.monotonic() + 30
    while Item.objects.using("replica").filter(pk=pk, value=value).count() == 0:
        assert time.monotonic() < deadline, "the standby never replayed the write"
        time.sleep(0.01)


def replica_sql(statement: str) -> None:
    with connections["replica"].cursor() as cursor:
        cursor.execute(statement)


def outside_django(port: str, dbname: str, *statements: str) -> None:
    """SQL run by another program (psql, a replication worker): freshcache sees nothing."""
    with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname=dbname,
                         autocommit=True) as conn:  # fmt: skip
        for statement in statements:
            conn.execute(statement)


def warm() -> None:
    """Any miss of this process (another request): it has seen the store's sequence."""
    fetch(f"warm:{time.monotonic_ns()}", lambda: 1)


def preloaded() -> dict[str, Any]:
    out: dict[str, Any] = {}
    row = Item.objects.create(name="preloaded", value=1)
    replayed(1, row.pk)
    warm()

    def fragment(item: Item) -> str:
        return render_fragment("value", [item], "attacks", None, lambda: str(item.value))

    first = shown.outcome(Item.objects.using("replica").get(pk=row.pk))
    out["first"] = [first.value, first.stored]
    out["first_fragment"] = fragment(Item.objects.using("replica").get(pk=row.pk))
    replica_sql("SELECT pg_wal_replay_pause()")
    try:
        Item.objects.filter(pk=row.pk).update(value=2)  # returned; not replayed yet
        warm()  # another request of this process misses meanwhile
        # A request that starts now: its view reads the replica (a router), outside any
        # cached computation, and hands the instance to the cached function and the fragment.
        loaded = Item.objects.using("replica").get(pk=row.pk)
        behind = shown.outcome(loaded)
        out["behind"] = [behind.value, behind.stored, behind.reason]
        out["behind_fragment"] = fragment(loaded)
    finally:
        replica_sql("SELECT pg_wal_replay_resume()")
    replayed(2, row.pk)
    # Requests after the standby replayed the write (and long after it returned).
    later = shown.outcome(Item.objects.using("replica").get(pk=row.pk))
    out["caught_up"] = [later.value, later.hit]
    out["caught_up_fragment"] = fragment(Item.objects.using("replica").get(pk=row.pk))
    return out


def atomic() -> dict[str, Any]:
    out: dict[str, Any] = {}
    row = Item.objects.create(name="atomic", value=1)
    replayed(1, row.pk)
    outside_django(
        _PRIMARY, "postgres",
        "DROP ROLE IF EXISTS limited",
        "CREATE ROLE limited LOGIN",
        "GRANT ALL ON SCHEMA public TO limited",
        "GRANT ALL ON ALL TABLES IN SCHEMA public TO limited",
        "GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO limited",
        "REVOKE EXECUTE ON FUNCTION pg_current_wal_insert_lsn() FROM PUBLIC",
    )  # fmt: skip
    connections.close_all()
    connections.settings["default"]["USER"] = "limited"  # the application's own role
    try:
        with transaction.atomic():
            seen = replica_value.outcome(row.pk)
            out["read"] = [seen.value, seen.stored, seen.reason]
            Item.objects.filter(pk=row.pk).update(value=seen.value + 1)
        out["write"] = "returned"
    except Exception as exc:
        out["write"] = f"{type(exc).__name__}: {exc}".strip()
    connections.close_all()
    connections.settings["default"]["USER"] = "postgres"
    out["value"] = Item.objects.get(pk=row.pk).value
    return out


def not_in_recovery() -> dict[str, Any]:
    out: dict[str, Any] = {}
    call_command("migrate", database="logical", verbosity=0)
    row = Item.objects.create(name="logical", value=1)
    table = Item._meta.db_table
    # The subscriber's copy of the row (the initial sync of a subscription).
    outside_django(_PRIMARY, "logical", "SET session_replication_role = replica",
                   f"INSERT INTO {table} (id, name, value) VALUES ({row.pk}, 'logical', 1)")
    first = logical_value.outcome(row.pk)
    out["first"] = [first.value, first.stored]
    Item.objects.filter(pk=row.pk).update(value=2)  # returned; the subscriber is behind
    behind = logical_value.outcome(row.pk)
    out["behind"] = [behind.value, behind.stored, behind.reason]
    # The subscriber applies the change (its worker runs with replication role: no trigger).
    outside_django(_PRIMARY, "logical", "SET session_replication_role = replica",
                   f"UPDATE {table} SET value = 2 WHERE id = {row.pk}")
    later = logical_value.outcome(row.pk)
    out["caught_up"] = [later.value, later.hit]
    return out


def main(mode: str) -> dict[str, Any]:
    call_command("migrate", verbosity=0)
    replicas = {"replica": "default", "logical": "default"}
    with override_settings(FRESHCACHE={"STORE": "memory://", "READ_REPLICAS": replicas}):
        return {"preloaded": preloaded, "atomic": atomic, "not_in_recovery": not_in_recovery}[
            mode
        ]()


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
    sys.stdout.flush()
    os._exit(0)  # the relay's and the journal's threads need no goodbye
