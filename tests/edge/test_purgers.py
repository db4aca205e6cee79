"""The purgers against a local HTTP server implementing Fastly's and Cloudflare's documented
purge endpoints (tests/edge/purge_api.py), reached through each official SDK (``fastly``,
``cloudflare``) with its base URL pointed at it; the queue in the real PostgreSQL database.

Each test writes log rows as a write would (``invalidate()``, or an ORM write whose triggers log
it), lets the relay's ``drain`` queue the purges, and runs purge workers: batching to each API's
limit, a 429 retried after its ``Retry-After``, 5xx retried with backoff, a worker killed
mid-batch (SIGKILL) whose keys another worker sends, no key sent twice without a crash.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection
from django.test import override_settings

import freshcache
from freshcache.edge import purge_keys
from freshcache.edge.worker import PurgeWorker, get_worker
from freshcache.log.relay import drain, get_relay
from tests.edge.purge_api import TOKEN, PurgeAPI
from tests.log.conftest import decoded, log_rows
from tests.testapp.models import Item

pytestmark = [pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]


def fastly(api: PurgeAPI, **extra: Any) -> dict[str, Any]:
    return {"BACKEND": "freshcache.edge.purgers.Fastly", "SERVICE_ID": "svc",
            "API_TOKEN": TOKEN, "BASE_URL": api.url, "RATE": None, "SETTLE": None,
            **extra}  # fmt: skip


def cloudflare(api: PurgeAPI, **extra: Any) -> dict[str, Any]:
    return {"BACKEND": "freshcache.edge.purgers.Cloudflare", "ZONE_ID": "zone",
            "API_TOKEN": TOKEN, "BASE_URL": api.url + "/client/v4", "RATE": None,
            "SETTLE": None, **extra}  # fmt: skip


def config(*purgers: dict[str, Any], store: str = "memory://") -> dict[str, Any]:
    # RELAY False: the test drains and runs the workers itself (none starts by its own).
    return {"STORE": store, "RELAY": False,
            "EDGE": {"KEYS": ["fastly", "cloudflare"], "PURGERS": list(purgers)}}  # fmt: skip


def sql(statement: str) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(statement)
        return list(cursor.fetchall()) if cursor.description else []


def queued() -> list[tuple[str, str]]:
    return [(p, k) for p, k in sql("SELECT purger, key FROM freshcache_purge ORDER BY id")]


@pytest.fixture
def api(transactional_db: None) -> Iterator[PurgeAPI]:
    if connection.vendor != "postgresql":
        pytest.skip("the log's triggers and SKIP LOCKED need PostgreSQL")
    get_relay().stop()
    get_worker().stop()  # a worker an earlier test started must not send this test's keys
    sql("DELETE FROM freshcache_log")
    sql("DELETE FROM freshcache_purge")
    with PurgeAPI() as server:
        yield server


def write(tags: list[str]) -> set[str]:
    """Invalidate ``tags`` (a log row, as a write makes) and drain the log; return the keys."""
    freshcache.invalidate(*tags)
    rows, _, _ = drain("default")
    assert rows == 1
    keys: set[str] = set()
    for tag in tags:
        keys |= purge_keys(tag)
    return keys


def command(settings: dict[str, Any], *args: str) -> subprocess.Popen[bytes]:
    """``manage.py freshcache *args`` in a child process on this test database, with
    ``settings`` as ``FRESHCACHE``."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.helpers.child_settings",
           "FRESHCACHE_CHILD_DB": connection.settings_dict["NAME"],
           "FRESHCACHE_CHILD_STORE": "memory://", "PURGE_SETTINGS": json.dumps(settings),
           "PYTHONPATH": os.pathsep.join(str(p) for p in (ROOT / "src", ROOT, ROOT / "example"))}
    code = textwrap.dedent(f"""
        import django, json, os
        django.setup()
        from django.core.management import call_command
        from django.test import override_settings
        with override_settings(FRESHCACHE=json.loads(os.environ["PURGE_SETTINGS"])):
            call_command("freshcache", *{args!r})
    """)
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def run_until_empty(*workers: PurgeWorker, timeout: float = 15.0) -> float:
    """Run ``workers`` as threads until the queue is empty; return the seconds it took."""
    start = time.monotonic()
    for worker in workers:
        worker.start("default", dedicated=True)
    try:
        while queued():
            assert time.monotonic() - start < timeout, queued()[:5]
            time.sleep(0.01)
    finally:
        for worker in workers:
            worker.stop()
    return time.monotonic() - start


def test_fastly_gets_batches_of_at_most_256_keys_and_each_key_once(api: PurgeAPI) -> None:
    with override_settings(FRESHCACHE=config(fastly(api))):
        keys = write([f"topic-{i}" for i in range(600)])
        assert len(keys) == 601 and len(queued()) == 601  # the topics and ~all
        PurgeWorker().run("default", once=True)
    assert [len(r.keys) for r in api.requests] == [256, 256, 89]
    assert Counter(api.purged("fastly")) == Counter(keys)
    assert queued() == []


def test_cloudflare_gets_batches_of_at_most_100_tags(api: PurgeAPI) -> None:
    with override_settings(FRESHCACHE=config(cloudflare(api))):
        keys = write([f"blog.post:{i}" for i in range(250)])
        assert len(keys) == 252  # the rows, their table, ~all
        PurgeWorker().run("default", once=True)
    assert [len(r.keys) for r in api.requests] == [100, 100, 52]
    assert Counter(api.purged("cloudflare")) == Counter(keys)


def test_every_purger_gets_every_key(api: PurgeAPI) -> None:
    with override_settings(FRESHCACHE=config(fastly(api), cloudflare(api, BATCH=30))):
        keys = write([f"topic-{i}" for i in range(40)])
        PurgeWorker().run("default", once=True)
    assert Counter(api.purged("fastly")) == Counter(keys)
    assert Counter(api.purged("cloudflare")) == Counter(keys)
    assert [len(r.keys) for r in api.requests if r.vendor == "cloudflare"] == [30, 11]


def test_a_429_is_retried_after_its_retry_after(api: PurgeAPI) -> None:
    api.script = [(429, {"Retry-After": "1"})]
    with override_settings(FRESHCACHE=config(fastly(api, BACKOFF=0.01))):
        keys = write(["blog.post:1"])
        PurgeWorker().run("default", once=True)
        # Not purged: the keys wait, with the edge's reason and its delay.
        assert len(queued()) == len(keys)
        out = io.StringIO()
        call_command("freshcache", "purges", "--json", stdout=out)
        report = json.loads(out.getvalue())["purgers"]
        assert report[0]["pending"] == 3 and report[0]["attempts"] == 1
        assert report[0]["last_error"] == "Fastly answered 429 Too Many Requests"
        assert 0.5 < report[0]["next_retry_seconds"] <= 1.0
        run_until_empty(PurgeWorker())
    first, second = api.requests
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 0.95
    assert sorted(second.keys) == sorted(keys)


def test_5xx_answers_are_retried_with_backoff_until_success(api: PurgeAPI) -> None:
    api.script = [(503, {}), (500, {}), (502, {})]
    with override_settings(FRESHCACHE=config(cloudflare(api, BACKOFF=0.05))):
        keys = write(["blog.post:1", "blog.post:2"])
        run_until_empty(PurgeWorker())
    assert [r.status for r in api.requests] == [503, 500, 502, 200]
    assert Counter(api.purged()) == Counter(keys)


def test_an_unreachable_edge_keeps_the_keys_queued(api: PurgeAPI) -> None:
    dead = {**fastly(api), "BASE_URL": "http://127.0.0.1:9", "TIMEOUT": 1}
    with override_settings(FRESHCACHE=config(dead)):
        keys = write(["blog.post:1"])
        PurgeWorker().run("default", once=True)
        assert sorted(k for _, k in queued()) == sorted(keys)
        (error,) = {e for (e,) in sql("SELECT last_error FROM freshcache_purge")}
        assert error.startswith("Fastly: MaxRetryError") or "refused" in error.lower(), error


def test_two_workers_never_send_one_key_twice(api: PurgeAPI) -> None:
    with override_settings(FRESHCACHE=config(fastly(api, BATCH=7), cloudflare(api, BATCH=5))):
        keys = write([f"topic-{i}" for i in range(150)])
        run_until_empty(PurgeWorker(), PurgeWorker(), PurgeWorker())
    assert Counter(api.purged("fastly")) == Counter(keys)
    assert Counter(api.purged("cloudflare")) == Counter(keys)


def test_a_worker_killed_mid_batch_loses_nothing(api: PurgeAPI) -> None:
    # The child claims a batch, sends it and is killed while Fastly has not answered; its claim
    # (2 x TIMEOUT + 1 = 3 s) lapses and another worker sends those keys again.
    settings = config(fastly(api, TIMEOUT=1, BATCH=50))
    api.hold = 0.5
    with override_settings(FRESHCACHE=settings):
        keys = write([f"topic-{i}" for i in range(120)])
        child = command(settings, "purges", "--send")
        try:
            assert api.arrived.wait(30), child.communicate(timeout=5)
            child.send_signal(signal.SIGKILL)
            child.wait(10)
        finally:
            if child.poll() is None:
                child.kill()
        claimed = {k for (k,) in sql("SELECT key FROM freshcache_purge "
                                     "WHERE claimed_until IS NOT NULL")}  # fmt: skip
        assert len(claimed) == 50  # the batch in flight when the child died
        api.hold = 0.0
        took = run_until_empty(PurgeWorker())
    assert set(api.purged()) == keys
    # Only the killed batch is sent twice (at least once), after its claim lapsed.
    twice = {k for k, n in Counter(api.purged()).items() if n > 1}
    assert twice <= claimed
    assert 1.5 < took < 10


def test_orm_writes_whose_writer_bumped_the_store_are_purged_too(api: PurgeAPI) -> None:
    from tests.conftest import store_url

    with override_settings(FRESHCACHE=config(fastly(api), store=store_url("redis"))):
        item = Item.objects.create(name="a", value=1)
        pk = item.pk
        Item.objects.filter(pk=pk).update(value=2)
        item.delete()
        rows = log_rows()
        assert len(rows) == 3
        expected: set[str] = set()
        for tag in decoded(rows):
            expected |= purge_keys(tag)
        read, bumped, _ = drain("default")
        # The writer bumped each row itself (its marks): the relay applies none again, and
        # still queues every row's purges.
        assert (read, bumped) == (3, 0)
        assert {k for _, k in queued()} == expected
        assert f"testapp.item~3A{pk}" in expected
        PurgeWorker().run("default", once=True)
    assert Counter(api.purged()) == Counter(expected)


def test_the_log_rows_stay_while_their_purges_cannot_be_queued(api: PurgeAPI) -> None:
    with override_settings(FRESHCACHE=config(fastly(api))):
        freshcache.invalidate("blog.post:1")
        sql("ALTER TABLE freshcache_purge RENAME TO freshcache_purge_away")
        try:
            with pytest.raises(DatabaseError):
                drain("default")
            assert len(log_rows()) == 1  # not deleted: nothing was queued
        finally:
            sql("ALTER TABLE freshcache_purge_away RENAME TO freshcache_purge")
        assert drain("default")[0] == 1
        assert {k for _, k in queued()} == set(purge_keys("blog.post:1"))


def test_a_key_queued_again_while_in_flight_is_sent_again(api: PurgeAPI) -> None:
    # The purge in flight may reach the edge before the second write committed.
    api.hold = 0.3
    with override_settings(FRESHCACHE=config(fastly(api))):
        write(["blog.post:1"])
        worker = PurgeWorker()
        thread = threading.Thread(target=worker.run, args=("default",), kwargs={"once": True})
        thread.start()
        assert api.arrived.wait(5)
        write(["blog.post:1"])  # while the first purge is in flight
        thread.join(10)
        api.hold = 0.0
        PurgeWorker().run("default", once=True)
    assert Counter(api.purged()) == Counter(
        {"blog.post~3A1": 2, "blog.post": 2, "~all": 2}
    )
    assert queued() == []


def test_the_purges_command_without_purgers(api: PurgeAPI) -> None:
    out = io.StringIO()
    call_command("freshcache", "purges", stdout=out)
    assert out.getvalue() == (
        "no purgers configured (FRESHCACHE['EDGE']['PURGERS']) and none queued\n"
    )
    with override_settings(FRESHCACHE=config(fastly(api))):
        write(["blog.post:1"])
        out = io.StringIO()
        call_command("freshcache", "purges", stdout=out)
        assert out.getvalue().startswith("fastly: 3 pending, oldest ")
        out = io.StringIO()
        call_command("freshcache", "purges", "--send", stdout=out)
        assert out.getvalue().splitlines() == [
            "sent 1 request(s), 3 key(s) purged",
            "fastly: 0 pending, oldest -, 0 sending, 0 settling, next retry -, last error -",
        ]


def test_settle_purges_each_key_once_more_after_settle_seconds(api: PurgeAPI) -> None:
    with override_settings(FRESHCACHE=config(fastly(api, SETTLE=0.3))):
        keys = write(["blog.post:1", "blog.post:2"])
        PurgeWorker().run("default", once=True)
        out = io.StringIO()
        call_command("freshcache", "purges", "--json", stdout=out)
        (report,) = json.loads(out.getvalue())["purgers"]
        assert (report["pending"], report["settling"]) == (0, len(keys))
        run_until_empty(PurgeWorker())
    first, second = api.requests
    assert sorted(first.keys) == sorted(second.keys) == sorted(keys)
    assert second.at - first.at >= 0.29


def test_a_key_queued_again_while_settling_is_purged_at_once(api: PurgeAPI) -> None:
    with override_settings(FRESHCACHE=config(fastly(api, SETTLE=30))):
        write(["blog.post:1"])
        PurgeWorker().run("default", once=True)
        write(["blog.post:1"])  # a new write: its purge does not wait for the settle time
        PurgeWorker().run("default", once=True)
    assert len(api.requests) == 2
    assert {p for (p,) in sql("SELECT phase FROM freshcache_purge")} == {1}


def test_requests_keep_to_the_rate_limit(api: PurgeAPI) -> None:
    with override_settings(FRESHCACHE=config(fastly(api, RATE=10, BURST=2, BATCH=1))):
        keys = write(["topic-1", "topic-2", "topic-3", "topic-4", "topic-5"])
        run_until_empty(PurgeWorker())
    assert Counter(api.purged()) == Counter(keys)
    times = [r.at for r in api.requests]
    # A burst of 2, then one every 0.1 s (the first token is taken a little before the first
    # request arrives: the SDK's client is built in between).
    assert len(times) == 6 and times[1] - times[0] < 0.05
    assert times[-1] - times[1] >= 0.3, times


def test_a_dedicated_relay_process_sends_the_purges(api: PurgeAPI) -> None:
    # RELAY False here, as in web processes next to a dedicated `manage.py freshcache relay`.
    settings = config(fastly(api))
    child = command(settings, "relay")
    try:
        with override_settings(FRESHCACHE=settings):
            freshcache.invalidate("blog.post:1")
            deadline = time.monotonic() + 20
            while len(api.purged()) < 3:
                assert child.poll() is None, child.communicate()
                assert time.monotonic() < deadline, child.communicate(timeout=1)
                time.sleep(0.01)
    finally:
        child.terminate()
        child.wait(10)
    assert Counter(api.purged()) == Counter(purge_keys("blog.post:1"))
    assert queued() == [] and log_rows() == []
