"""Attacks on READ_REPLICAS (capture/replicas.py) with a real primary and streaming standby
(tests/helpers/pg_standby.py): each mode of tests/replica/attacks.py runs in a child process.

Rule 1: once a write has returned, no request that starts afterwards gets anything built from
older data. Rule 3: the cache never makes a write fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.pg_standby import Standby, child, started

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module")
def standby() -> Iterator[Standby]:
    for pg in started():
        pg.sql(pg.primary_port, "CREATE DATABASE logical")
        yield pg


def run(pg: Standby, mode: str) -> dict[str, Any]:
    return child(pg, "tests.replica.attacks", "tests.replica.attack_settings", mode)


def test_an_instance_read_from_a_lagging_replica_before_a_computation_is_not_stored(
    standby: Standby,
) -> None:
    """A view reads the standby outside any cached computation (a router; an uncached page
    with fragments) while it has not replayed a write that returned, then hands the instance
    to ``@cached`` / ``{% cachefresh %}``. The instance's read generation is bounded by a
    snapshot taken after the write (another request of the process missed meanwhile), so the
    old value passes every check and is stored under the write's versions: served after the
    standby caught up, until the next write."""
    seen = run(standby, "preloaded")
    assert seen["first"] == [1, True] and seen["first_fragment"] == "1", seen
    # Served from the lagging standby: acceptable only if not stored.
    assert seen["behind"][0] == 1 and seen["behind_fragment"] == "1", seen
    assert seen["caught_up"][0] == 2, f"stale @cached value after the standby caught up: {seen}"
    assert seen["caught_up_fragment"] == "2", f"stale fragment after the standby caught up: {seen}"


def test_a_replica_that_is_not_in_recovery_is_not_assumed_caught_up(standby: Standby) -> None:
    """``pg_last_wal_replay_lsn()`` is NULL on a server that is not a standby (a logical
    replication subscriber): it was taken as "caught up", and the subscriber's old row, read
    after the write returned, stored under the write's versions. Now such a replica is never
    vouched for: what is read from it is served, never stored."""
    seen = run(standby, "not_in_recovery")
    assert seen["first"] == [1, False], seen  # never vouched for: computed, never stored
    assert seen["behind"][0] == 1, seen
    assert "is not a streaming standby" in seen["behind"][2], seen
    assert seen["caught_up"][0] == 2, f"stale after the subscriber applied the write: {seen}"


def test_the_replay_check_never_makes_the_callers_write_fail(standby: Standby) -> None:
    """The check's ``SELECT pg_current_wal_insert_lsn()`` runs on the caller's primary
    connection, inside its ``atomic()`` block: when it fails, PostgreSQL aborts the caller's
    transaction and the caller's next write in the block raises."""
    seen = run(standby, "atomic")
    assert seen["read"][0] == 1 and seen["read"][1] is False, seen  # served, not stored: fine
    assert seen["write"] == "returned", seen
    assert seen["value"] == 2, seen
