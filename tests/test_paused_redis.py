"""A write that returned while Redis was paused for writes is never read stale afterwards.

``CLIENT PAUSE <ms> WRITE`` (what ``FAILOVER`` does) queues every write command, and freshcache's
lookup script counts as one. Two real processes share a throwaway ``redis-server`` and the test
database (whose triggers feed the invalidation log):

* the **writer** pauses Redis for :data:`PAUSE_MS` ms, then updates a row through the ORM: the
  log row is committed and NOTIFY'd, the post-commit bump waits in Redis, times out after the
  socket timeout and the write returns (the relays will apply the row);
* the **reader**, told the moment the write returned (the writer answers on its stdout pipe,
  the test writes to the reader's stdin), reads the row through a ``@cached`` function. Its
  relay got the NOTIFY and its apply waits in Redis too; its lookup is queued behind the pause
  and answered with the old entry when the pause ends, while no relay has applied the row yet.
  That hit must not be served (docs/internals.md, "The guarantee, exactly").

Bounded: :data:`TRIALS` trials per mode (with and without a near cache), about 0.7 s each.
Before the hit check, 6 or 7 of the 8 reads of each mode were stale.

Then each clause of the check, deterministically, in one process: a memory store whose lookup
lets the relay's counters move while it is in flight.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings

from freshcache.core import HIT_BEFORE_LOG, afetch, fetch
from freshcache.log.relay import get_relay
from freshcache.stores import Hit, Snapshot
from freshcache.stores.memory import MemoryStore
from freshcache.stores.redis import RedisStore
from tests.helpers import RedisServer
from tests.testapp.models import Item

ROOT = Path(__file__).resolve().parent.parent
TRIALS = 8
PAUSE_MS = 400
SOCKET_TIMEOUT = 0.25
#: Seconds any child may take to answer one command before the test gives up on it.
PATIENCE = 20.0

_CHILD = textwrap.dedent(
    """
    import json, sys, time
    import django
    django.setup()
    import redis
    import freshcache
    from freshcache import cached
    from tests.testapp.models import Item

    @cached
    def value_of(pk):
        return Item.objects.get(pk=pk).value

    pauser = redis.Redis.from_url(sys.argv[1], socket_timeout=5)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "read":
            began = time.monotonic()
            out = value_of.outcome(cmd["pk"])
            print(json.dumps({"value": out.value, "hit": out.hit, "reason": out.reason,
                              "began": began, "ended": time.monotonic()}), flush=True)
        elif cmd["op"] == "write":
            failures = freshcache.stats()["bump_failures"]
            pauser.execute_command("CLIENT", "PAUSE", cmd["pause_ms"], "WRITE")
            paused = time.monotonic()
            Item.objects.filter(pk=cmd["pk"]).update(value=cmd["value"])
            returned = time.monotonic()
            print(json.dumps({"paused": paused, "returned": returned,
                              "bump_failed": freshcache.stats()["bump_failures"] > failures}),
                  flush=True)
    """
)


class Child:
    """A Django process on the test database and ``store``, driven one JSON line at a time."""

    def __init__(self, store: str, redis_url: str) -> None:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.helpers.child_settings",
            "FRESHCACHE_CHILD_DB": connection.settings_dict["NAME"],
            "FRESHCACHE_CHILD_STORE": store,
            # src first: the children run this checkout's freshcache, not an installed one.
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT), str(ROOT / "example")]),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, redis_url],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self._answer() == {"ready": True}

    def ask(self, **command: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def _answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], PATIENCE)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.stop()
            assert self.proc.stderr is not None
            raise AssertionError("a child died or hung:\n" + self.proc.stderr.read()[-3000:])
        answer: dict[str, Any] = json.loads(line)
        return answer

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def server(transactional_db: None) -> Iterator[RedisServer]:
    if connection.vendor != "postgresql":
        pytest.skip("the invalidation log's triggers need PostgreSQL")
    with RedisServer() as redis_server:
        yield redis_server


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.parametrize("near", ["", "&near_cache=64mb"], ids=["redis", "redis-near"])
def test_a_lookup_queued_by_a_write_pause_is_not_served_after_a_write_returned(
    server: RedisServer, near: str
) -> None:
    store = f"{server.url}?prefix=fcpause&socket_timeout={SOCKET_TIMEOUT}{near}"
    items = [Item.objects.create(name=f"p{i}", value=1) for i in range(TRIALS)]
    writer = Child(store, server.url)
    reader = Child(store, server.url)
    stale: list[dict[str, Any]] = []
    reasons: dict[str, int] = {}
    armed = failed_bumps = 0
    try:
        for item in items:
            deadline = time.monotonic() + PATIENCE
            while not reader.ask(op="read", pk=item.pk)["hit"]:  # the old entry, stored
                assert time.monotonic() < deadline, "the reader never got a hit"
                time.sleep(0.02)
            armed += 1
            wrote = writer.ask(op="write", pk=item.pk, value=2, pause_ms=PAUSE_MS)
            read = reader.ask(op="read", pk=item.pk)
            failed_bumps += wrote["bump_failed"]
            why = "hit" if read["hit"] else str(read["reason"])
            reasons[why] = reasons.get(why, 0) + 1
            # The oracle: the read began after the write returned, so it must show the write.
            assert read["began"] > wrote["returned"]
            if read["value"] != 2:
                stale.append({**read, "write_returned": wrote["returned"] - wrote["paused"]})
            # Let the pause end and the relays apply the row before the next trial.
            time.sleep(max(0.0, wrote["paused"] + PAUSE_MS / 1000 + 0.2 - time.monotonic()))
    finally:
        writer.stop()
        reader.stop()
    print(
        f"\n{near or 'no near cache'}: {len(stale)} stale in {armed} trials "
        f"({failed_bumps} writes returned after a failed bump); reads: {reasons}"
    )
    # The scenario happened: the writer's bump gave up against the pause (under load a bump can
    # slip in before the pause takes hold: a trial that tests nothing, so most must count).
    assert armed == TRIALS and failed_bumps >= TRIALS - 2, (failed_bumps, armed)
    assert not stale, f"{len(stale)} stale reads in {TRIALS} trials: {stale}"


# -- the condition, race by race (one process, a store whose lookup lets the relay move) ---------


class _InFlight(MemoryStore):
    """A memory store that runs ``during`` while a lookup is in flight (after it was sent,
    before its answer arrives), as the relay's thread may."""

    during: Callable[[], None] = staticmethod(lambda: None)

    def lookup(self, key: str) -> Hit | Snapshot:
        found = super().lookup(key)
        self.during()
        return found

    def peek(self, key: str) -> Hit | None:
        found = super().lookup(key)
        self.during()
        return found if isinstance(found, Hit) else None


@pytest.fixture
def in_flight() -> Iterator[_InFlight]:
    relay = get_relay()
    with override_settings(FRESHCACHE={"STORE": "memory://", "RELAY": False}):
        store = _InFlight("in-flight", "memory://")
        try:
            yield store
        finally:
            relay.pending = False
            relay.batches_applied = relay.batches_read
            relay.grace = 0.0


def _fetch(store: _InFlight, during: Callable[[], None]) -> Any:
    store.during = during
    return fetch("k", lambda: "fresh", store=store)


def test_a_hit_is_served_when_the_relay_did_nothing_meanwhile(in_flight: _InFlight) -> None:
    fetch("k", lambda: "old", store=in_flight)
    out = _fetch(in_flight, lambda: None)
    assert (out.value, out.hit, out.reason) == ("old", True, None)


def test_a_hit_is_refused_while_a_batch_the_relay_read_is_not_applied(
    in_flight: _InFlight,
) -> None:
    """The relay read rows (before or while the lookup was in flight) and is still applying
    them when the hit arrives, possibly past its socket timeout and not yet marked pending."""
    relay = get_relay()
    fetch("k", lambda: "old", store=in_flight)
    out = _fetch(in_flight, relay._read)
    assert (out.value, out.hit, out.reason) == ("fresh", False, HIT_BEFORE_LOG)
    out = _fetch(in_flight, lambda: None)  # still not applied: not served either
    assert (out.value, out.reason) == ("fresh", HIT_BEFORE_LOG)
    relay._applied()
    out = _fetch(in_flight, lambda: None)
    assert (out.value, out.hit) == ("old", True)


def test_a_hit_is_refused_after_a_failed_apply_even_if_a_retry_succeeded_meanwhile(
    in_flight: _InFlight,
) -> None:
    """The apply timed out (its command dropped with its connection), the relay recorded the
    failure and a retry got through, all while the lookup, queued before the retry, waited:
    nothing is pending when the hit arrives, and it is still refused."""
    relay = get_relay()
    fetch("k", lambda: "old", store=in_flight)

    def fail_then_retry() -> None:
        relay._read()
        relay.failures += 1
        relay.pending = True
        relay._read()
        relay._applied()
        relay.pending = False

    out = _fetch(in_flight, fail_then_retry)
    assert (out.value, out.hit, out.reason) == ("fresh", False, HIT_BEFORE_LOG)
    out = _fetch(in_flight, lambda: None)
    assert (out.value, out.hit) == ("old", True)


def test_a_hit_is_served_when_the_relay_applied_what_it_read_before_the_hit_arrived(
    in_flight: _InFlight,
) -> None:
    relay = get_relay()
    fetch("k", lambda: "old", store=in_flight)

    def read_and_apply() -> None:
        relay._read()
        relay._applied()

    out = _fetch(in_flight, read_and_apply)
    assert (out.value, out.hit) == ("old", True)


def test_a_hit_is_served_while_an_apply_to_an_in_order_store_is_in_flight_shorter_than_its_grace(
    in_flight: _InFlight,
) -> None:
    """Redis runs an ``apply`` sent before the lookup first, unless its socket timed out (and
    redis-py dropped it), which takes the socket timeout: before that, normal relay traffic
    costs no hit. Past it, the hit is refused although no failure is recorded yet."""
    relay = get_relay()
    fetch("k", lambda: "old", store=in_flight)

    def read_in_order() -> None:
        relay._read()
        relay.grace = 10.0

    out = _fetch(in_flight, read_in_order)
    assert (out.value, out.hit) == ("old", True)
    relay.read_at -= 10.0  # the apply has been in flight for the whole socket timeout
    out = _fetch(in_flight, lambda: None)
    assert (out.value, out.hit, out.reason) == ("fresh", False, HIT_BEFORE_LOG)


def test_the_redis_store_and_its_near_cache_grant_their_socket_timeout() -> None:
    store = RedisStore("g", "redis://127.0.0.1:1/0?socket_timeout=0.3&near_cache=1mb")
    near = store.near()
    try:
        assert store.apply_grace == near.apply_grace == 0.3
        assert MemoryStore("m", "memory://").apply_grace == 0.0
    finally:
        near.close()


def test_a_near_hit_on_the_event_loop_is_refused_the_same_way(in_flight: _InFlight) -> None:
    relay = get_relay()
    fetch("k", lambda: "old", store=in_flight)
    in_flight.during = relay._read

    async def fresh() -> str:
        return "fresh"

    out = asyncio.run(afetch("k", fresh, store=in_flight))
    assert (out.value, out.hit, out.reason) == ("fresh", False, HIT_BEFORE_LOG)
