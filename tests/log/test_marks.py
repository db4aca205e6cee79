"""Marks: the writer's own bump and the relays together bump a log row once.

* A normal ORM write costs each dependent entry one miss, whether a relay runs in the process
  (it then skips the writer's marked rows), a relay drains by hand, or no relay runs at all.
* A write whose bump failed (the store unreachable from this process only, as in a network
  partition: same Redis server, same data, same run id) is remembered by its log row alone, and
  ``drain`` applies it once the store answers again.

Measured numbers are printed (``pytest -s``) for the record in the report.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from django.test import override_settings

import freshcache
from blog.models import Comment
from freshcache import cached, counters
from freshcache.log import relay
from tests.conftest import store_url
from tests.helpers import RedisServer

from .conftest import log_rows, outside_params
from .proxy import Proxy

pytestmark = [pytest.mark.postgres]

WRITES = 20


def seed(conn: psycopg.Connection[Any]) -> None:
    conn.execute("INSERT INTO blog_author (id, name, slug, bio) VALUES (1, 'Ann', 'ann', '')")
    conn.execute(
        "INSERT INTO blog_post (id, author_id, title, slug, body, published_at, view_count) "
        "VALUES (7, 1, 'Seven', 'seven', '', now(), 0)"
    )
    conn.execute("DELETE FROM freshcache_log")


def waiting(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM freshcache_log").fetchone()
    assert row is not None
    return int(row[0])


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


_serial = [0]


def comments_of() -> Any:
    """A fresh ``@cached`` function of the comments of post 7 (a name per test run)."""
    _serial[0] += 1

    @cached(name=f"test-marks-comments-{_serial[0]}")
    def comments(post: int) -> list[str]:
        return truth(post)

    return comments


def truth(post: int) -> list[str]:
    return list(Comment.objects.filter(post_id=post).order_by("pk").values_list("body", flat=True))


@pytest.fixture(params=["database", "redis"])
def shared_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "redis":
        request.node.add_marker(pytest.mark.redis)
        from tests.conftest import pytest_runtest_setup

        pytest_runtest_setup(request.node)
    return str(request.param)




@pytest.mark.parametrize("relay_mode", ["thread", "drain", "none"])
def test_a_write_costs_each_dependent_entry_one_miss(
    outside: psycopg.Connection[Any],
    clean_log: None,
    shared_kind: str,
    relay_mode: str,
) -> None:
    """``thread``: the relay of this process runs (LISTEN/NOTIFY); ``drain``: no thread, the log
    is drained by hand between the read that re-stores the entry and the next read, the moment
    a second bump would show; ``none``: nothing applies the log (the baseline)."""
    seed(outside)
    settings = {"STORE": store_url(shared_kind), "RELAY": relay_mode == "thread"}
    with override_settings(FRESHCACHE=settings):
        freshcache.store().clear()
        comments = comments_of()
        wait_for(lambda: comments.outcome(7).hit, "the entry to be cached")
        if relay_mode == "thread":
            wait_for(lambda: relay.get_relay().drains > 0, "the relay's first drain")
            # The seed's rows too: under load the relay may still be applying them.
            wait_for(lambda: waiting(outside) == 0, "the relay to drain the seed's rows")
            # And to count them (after their deletion): until the count holds for 0.3 s (a
            # loaded machine counted the last seed row after a fixed 0.2 s wait).
            counted, steady = relay.get_relay().rows_applied, 0
            for _ in range(100):
                time.sleep(0.1)
                now = relay.get_relay().rows_applied
                steady = steady + 1 if now == counted else 0
                counted = now
                if steady >= 3:
                    break
        applied_before = relay.get_relay().rows_applied
        counters.reset()
        misses = 0
        for n in range(WRITES):
            Comment.objects.create(post_id=7, author_name="w", body=f"b{n}")
            first = comments.outcome(7)
            assert first.value == truth(7)
            if relay_mode == "thread":
                wait_for(lambda: waiting(outside) == 0, "the relay to drain the write's row")
            elif relay_mode == "drain":
                rows, bumped, _ = relay.drain("default")
                assert (rows, bumped) == (1, 0)  # the writer's bump marked its row
            second = comments.outcome(7)
            assert second.value == truth(7)
            misses += (not first.hit) + (not second.hit)
        print(f"\n{shared_kind} store, relay {relay_mode}: {misses / WRITES:.2f} misses per write")
        assert misses == WRITES
        assert counters.snapshot()["bump_failures"] == 0
        if relay_mode == "thread":
            assert relay.get_relay().rows_applied == applied_before  # every row was marked


def comment_from_outside(conn: psycopg.Connection[Any]) -> None:
    """A comment on post 7 written by ``psql``: its log row is bumped by no writer."""
    conn.execute(
        "INSERT INTO blog_comment (post_id, author_name, body, created_at, approved) "
        "VALUES (7, 'psql', 'outside', now(), true)"
    )


def test_the_relay_holds_no_hit_for_rows_their_writers_bumped(
    outside: psycopg.Connection[Any], clean_log: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of log rows that every store has recorded as bumped (any write through Django)
    needs no ``apply``, and the relay holds no hit while it deletes it (``Store.marked``). A
    row from outside Django still holds hits from the database store while it is applied.
    Before ``marked``, each write's row was sent to ``apply``, and hits were refused
    meanwhile (a bypass after every write on the database store, and CI failures)."""
    from freshcache.core import HIT_BEFORE_LOG
    from freshcache.stores.database import DatabaseStore

    seed(outside)
    real_apply = DatabaseStore.apply
    applying = threading.Event()

    def slow_apply(self: DatabaseStore, *args: Any, **kwargs: Any) -> int:
        applying.set()
        time.sleep(0.3)
        return real_apply(self, *args, **kwargs)

    monkeypatch.setattr(DatabaseStore, "apply", slow_apply)
    with override_settings(FRESHCACHE={"STORE": "database://", "RELAY": True}):
        freshcache.store().clear()
        comments = comments_of()
        wait_for(lambda: comments.outcome(7).hit, "the entry to be cached")
        wait_for(lambda: waiting(outside) == 0, "the relay to apply the seed's rows")
        time.sleep(0.35)  # the seed's last apply, if one is still sleeping
        applying.clear()
        reads: list[str | None] = []
        for n in range(10):
            Comment.objects.create(post_id=7, author_name="w", body=f"b{n}")
            assert comments.outcome(7).value == truth(7)
            deadline = time.monotonic() + 0.1
            while time.monotonic() < deadline:  # while the relay reads and deletes the row
                out = comments.outcome(7)
                reads.append("hit" if out.hit else out.reason)
            wait_for(lambda: waiting(outside) == 0, "the relay to delete the write's row")
        assert not applying.is_set(), "rows their writers bumped were sent to apply"
        assert HIT_BEFORE_LOG not in reads and reads.count("hit") == len(reads), set(reads)

        comment_from_outside(outside)
        wait_for(applying.is_set, "the relay to apply the row of a write from outside Django")
        assert relay.get_relay().hit_refused(relay.get_relay().failures)
        wait_for(lambda: waiting(outside) == 0, "the relay to apply the outside write's row")
        assert comments.outcome(7).value == truth(7) and "outside" in truth(7)


def test_hits_wait_for_the_commit_of_an_apply_made_in_the_logs_transaction(
    outside: psycopg.Connection[Any], clean_log: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database store on the log's own database applies inside the relay's transaction
    (its ``atomic()`` is a savepoint there): until that transaction commits, its bumps are
    invisible to other connections, so hits stay held (found by a review: the batch counted
    as applied before the log rows were deleted and the transaction committed)."""
    seed(outside)
    real_delete = relay._delete
    deleting = threading.Event()

    def slow_delete(conn: Any, ids: list[int]) -> set[int]:
        gone = real_delete(conn, ids)
        deleting.set()
        time.sleep(0.3)  # applied, not committed
        return gone

    monkeypatch.setattr(relay, "_delete", slow_delete)
    with override_settings(FRESHCACHE={"STORE": "database://", "RELAY": True}):
        comments = comments_of()
        wait_for(lambda: comments.outcome(7).value == truth(7), "the relay's first drain")
        wait_for(lambda: waiting(outside) == 0, "the relay to apply the seed's rows")
        time.sleep(0.35)
        deleting.clear()
        comment_from_outside(outside)
        wait_for(deleting.is_set, "the relay to apply and delete the outside write's row")
        assert relay.get_relay().hit_refused(relay.get_relay().failures)
        wait_for(lambda: waiting(outside) == 0, "the relay to commit")
        wait_for(
            lambda: not relay.get_relay().hit_refused(relay.get_relay().failures),
            "the batch to count as applied",
        )
        assert comments.outcome(7).value == truth(7)


def _waiting_on_locks(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_concurrent_bump_and_apply_bump_once(
    outside: psycopg.Connection[Any], clean_log: None
) -> None:
    """The interleaving behind the race, forced: a relay's ``apply`` of log row M and the
    writer's ``bump(tags, marks=[M])`` both start while neither has committed (another session
    holds the tag's row lock, so both wait after their mark check). Exactly one may bump."""
    from django.db import connections

    tag, mark = "test-marks-race", 2_000_000_001
    with override_settings(FRESHCACHE={"STORE": "database://", "RELAY": False}):
        store = freshcache.store()
        store.bump([tag])  # the tag's row exists, so it can be locked
        results: dict[str, Any] = {}

        def run(name: str, fn: Callable[[], Any]) -> None:
            try:
                results[name] = fn()
            except Exception as exc:  # reported by the assertion below
                results[name] = exc
            finally:
                connections.close_all()

        before = outside.execute("SELECT last_value FROM freshcache_seq").fetchone()
        # pg_stat_activity is read once per transaction: watch from a connection of its own.
        watcher = psycopg.connect(**outside_params(), autocommit=True)
        with watcher, outside.transaction():
            outside.execute("SELECT 1 FROM freshcache_tag WHERE tag = %s FOR UPDATE", [tag])
            relay_side = threading.Thread(
                target=run, args=("apply", lambda: store.apply([(mark, [tag])]))
            )
            relay_side.start()
            wait_for(lambda: _waiting_on_locks(watcher) >= 1, "the relay's apply to wait")
            writer_side = threading.Thread(
                target=run, args=("bump", lambda: store.bump([tag], [mark]))
            )
            writer_side.start()
            wait_for(lambda: _waiting_on_locks(watcher) >= 2, "the writer's bump to wait")
        relay_side.join(10)
        writer_side.join(10)
        after = outside.execute("SELECT last_value FROM freshcache_seq").fetchone()
        assert not any(isinstance(r, Exception) for r in results.values()), results
        assert before is not None and after is not None
        assert after[0] - before[0] == 1, f"bumped {after[0] - before[0]} times ({results})"
        store.forget([mark])


@pytest.fixture
def partitioned_redis() -> Iterator[tuple[RedisServer, Proxy]]:
    with RedisServer() as server, Proxy(server.port) as proxy:
        yield server, proxy


PARTITION = {"RELAY": False, "SOCKET_TIMEOUT": 0.2, "CONNECT_TIMEOUT": 0.2, "BREAKER_SECONDS": 0}


@pytest.mark.redis
def test_a_failed_bump_is_applied_by_drain_once_the_store_is_back(
    outside: psycopg.Connection[Any],
    clean_log: None,
    partitioned_redis: tuple[RedisServer, Proxy],
) -> None:
    _, proxy = partitioned_redis
    seed(outside)
    url = f"redis://127.0.0.1:{proxy.port}/0"
    with override_settings(FRESHCACHE={"STORE": url, **PARTITION}):
        comments = comments_of()
        wait_for(lambda: comments.outcome(7).hit, "the entry to be cached")
        old = comments(7)

        proxy.cut()
        Comment.objects.create(post_id=7, author_name="w", body="while cut off")
        assert counters.snapshot()["bump_failures"] >= 1
        assert [(r["tbl"], r["op"]) for r in log_rows()] == [("blog_comment", "INSERT")]
        proxy.heal()

        # Redis kept its entries and its run id: only the log remembers the write. (This
        # process runs no relay; a relay elsewhere would have applied the row by now.)
        stale = comments.outcome(7)
        assert (stale.hit, stale.value) == (True, old)

        rows, bumped, _ = relay.drain("default")
        assert (rows, bumped) == (1, 1)
        assert log_rows() == []
        fresh = comments.outcome(7)
        assert not fresh.hit and fresh.value == [*old, "while cut off"] == truth(7)
        assert comments.outcome(7).hit
        assert relay.drain("default")[:2] == (0, 0)


@pytest.mark.redis
def test_the_relay_thread_applies_a_failed_bump_and_nothing_stale_is_served(
    outside: psycopg.Connection[Any],
    clean_log: None,
    partitioned_redis: tuple[RedisServer, Proxy],
) -> None:
    """With the in-process relay: while the write's row waits, reads bypass the store (fresh,
    uncached); once the store answers, the relay applies the row and caching resumes."""
    _, proxy = partitioned_redis
    seed(outside)
    url = f"redis://127.0.0.1:{proxy.port}/0"
    with override_settings(FRESHCACHE={"STORE": url, **PARTITION, "RELAY": True}):
        comments = comments_of()
        wait_for(lambda: comments.outcome(7).hit, "the entry to be cached")
        proxy.cut()
        Comment.objects.create(post_id=7, author_name="w", body="while cut off")
        expected = truth(7)
        for _ in range(20):  # cut off: computed, never served from the store
            out = comments.outcome(7)
            assert (out.hit, out.value) == (False, expected)
            time.sleep(0.005)
        healed = time.monotonic()
        proxy.heal()
        while True:
            out = comments.outcome(7)
            assert out.value == expected, "a stale value was served"
            if out.hit:
                break
            assert time.monotonic() - healed < 10, "caching never resumed"
            time.sleep(0.002)
        lag = time.monotonic() - healed
        print(f"\nrelay thread: caching resumed {lag * 1000:.0f} ms after the store was back")
        assert waiting(outside) == 0
        assert relay.get_relay().rows_applied >= 1
