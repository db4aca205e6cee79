"""The relay and the commands around it: a write whose bump never happened is applied by a relay.

* a process killed between its COMMIT and its bump (a real child process that ``os._exit``s at
  the ``before_bump`` hook): the log row is there, and ``manage.py freshcache relay --once`` or
  the in-process relay applies it;
* a table without trigger: freshcache writes the log row itself, in the writing transaction;
* while a bump of this process failed, the stores are not read (``reason=invalidation log not
  yet applied``), and once the store is back the backlog is applied and caching resumes;
* ``manage.py freshcache log`` reports the backlog.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test import override_settings

import freshcache
from freshcache import cached, depends_on
from freshcache.core import LOG_NOT_APPLIED
from freshcache.log import triggers
from freshcache.log.relay import get_relay
from tests.conftest import store_url
from tests.helpers import RedisServer
from tests.testapp.models import Item

pytestmark = [pytest.mark.postgres]

ROOT = Path(__file__).resolve().parent.parent
calls: dict[str, int] = {"n": 0}


@cached
def value_of(pk: int) -> int:
    calls["n"] += 1
    return Item.objects.get(pk=pk).value


def clear_log() -> None:
    """Forget rows earlier writes left (the test database's flush logs a TRUNCATE per table)."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM freshcache_log")


def waiting() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM freshcache_log")
        return int(cursor.fetchone()[0])


@pytest.fixture
def redis_store(transactional_db: None) -> Iterator[None]:
    with override_settings(FRESHCACHE={"STORE": store_url("redis")}):
        freshcache.store().clear()
        yield
        freshcache.store().clear()


def child(code: str, store: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh Django process on this test database and ``store``."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.helpers.child_settings",
        "FRESHCACHE_CHILD_DB": connection.settings_dict["NAME"],
        "FRESHCACHE_CHILD_STORE": store,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "example")]),
    }
    script = "import django; django.setup()\n" + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )


@pytest.mark.redis
def test_a_writer_killed_between_commit_and_bump_loses_nothing(redis_store: None) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("triggers need PostgreSQL")
    with override_settings(FRESHCACHE={"STORE": store_url("redis"), "RELAY": False}):
        item = Item.objects.create(name="a", value=1)
        assert value_of(item.pk) == 1
        assert value_of.outcome(item.pk).hit  # type: ignore[attr-defined]
        clear_log()
        # The child commits, then dies at the hook that runs just before its bump.
        done = child(
            f"""
            import os
            from freshcache import hooks
            from tests.testapp.models import Item
            hooks.registered["before_bump"] = lambda **kw: os._exit(0)
            Item.objects.filter(pk={item.pk}).update(value=2)
            raise SystemExit("the bump ran: the child should have died before it")
            """,
            store_url("redis"),
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert Item.objects.get(pk=item.pk).value == 2
        assert waiting() == 1  # the trigger's row, committed with the write, never bumped
        # No relay runs here: the old entry is still served (what 0.1 did for good).
        assert value_of.outcome(item.pk).value == 1  # type: ignore[attr-defined]
        out = io.StringIO()
        call_command("freshcache", "relay", "--once", stdout=out)
        assert out.getvalue().strip() == "1 log row(s) read, 1 applied"
        assert waiting() == 0
        assert value_of(item.pk) == 2


@pytest.mark.redis
def test_the_in_process_relay_applies_a_dead_writers_row_before_serving(redis_store: None) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("triggers need PostgreSQL")
    item = Item.objects.create(name="b", value=1)
    assert value_of(item.pk) == 1
    get_relay().stop()
    done = child(
        f"""
        import os
        from freshcache import hooks
        from tests.testapp.models import Item
        hooks.registered["before_bump"] = lambda **kw: os._exit(0)
        Item.objects.filter(pk={item.pk}).update(value=3)
        """,
        store_url("redis"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # The first use of the cache starts the relay and waits for its first drain.
    assert value_of(item.pk) == 3
    assert waiting() == 0


def test_a_table_without_trigger_is_logged_by_freshcache_in_the_transaction(
    transactional_db: None,
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("compares with the PostgreSQL triggers")
    with override_settings(FRESHCACHE={"STORE": store_url("database"), "RELAY": False}):
        triggers.uninstall()
        clear_log()
        try:
            item = Item.objects.create(name="c", value=1)
            with connection.cursor() as cursor:
                cursor.execute("SELECT source, tags FROM freshcache_log ORDER BY id")
                rows = cursor.fetchall()
            assert [r[0] for r in rows] == ["django"]
            assert f"testapp.item:{item.pk}" in rows[0][1].split("\n")
            with transaction.atomic():
                Item.objects.filter(pk=item.pk).update(value=5)
                with connection.cursor() as cursor:  # inside the writing transaction already
                    cursor.execute("SELECT count(*) FROM freshcache_log")
                    assert cursor.fetchone()[0] == 2
                raise_rollback = True
                transaction.set_rollback(raise_rollback)
            assert waiting() == 1  # rolled back with the write
        finally:
            triggers.install()


@pytest.mark.redis
def test_reads_wait_for_the_relay_while_a_bump_of_this_process_failed(
    transactional_db: None,
) -> None:
    """The write's bump fails (the store is unreachable for the writer only: it is configured
    with a refused address while it writes), the relay cannot apply the row yet (another
    session holds the log table locked), and the store is reachable for reads: the old entry
    must not be served meanwhile, and caching resumes, fresh, once the relay got through."""
    if connection.vendor != "postgresql":
        pytest.skip("triggers need PostgreSQL")
    import psycopg

    params = connection.get_connection_params()
    options = {"SOCKET_TIMEOUT": 0.2, "CONNECT_TIMEOUT": 0.2, "BREAKER_SECONDS": 0.3}
    with RedisServer() as server, RedisServer() as dead:
        dead_url = dead.url
        dead.kill()
        with override_settings(FRESHCACHE={"STORE": server.url, **options}):
            item = Item.objects.create(name="d", value=1)

            @cached
            def read(pk: int) -> int:
                depends_on(f"item-read:{pk}")
                return Item.objects.get(pk=pk).value

            assert read(item.pk) == 1
            assert read.outcome(item.pk).hit  # type: ignore[attr-defined]
            blocker = psycopg.connect(
                host=params["host"], port=params["port"], user=params["user"],
                dbname=params["dbname"],
            )
            try:
                with override_settings(FRESHCACHE={"STORE": dead_url, **options}):
                    Item.objects.filter(pk=item.pk).update(value=2)  # returns; bump refused
                    assert freshcache.stats()["bump_failures"] >= 1
                    blocker.execute("LOCK TABLE freshcache_log IN ACCESS EXCLUSIVE MODE")
                end = time.monotonic() + 1.0
                while time.monotonic() < end:
                    out = read.outcome(item.pk)  # type: ignore[attr-defined]
                    assert out.value == 2, out
                    assert out.reason == LOG_NOT_APPLIED, out
                    time.sleep(0.02)
            finally:
                blocker.rollback()
                blocker.close()
            deadline = time.monotonic() + 10
            while not read.outcome(item.pk).hit:  # type: ignore[attr-defined]
                assert read(item.pk) == 2
                assert time.monotonic() < deadline, "caching never resumed"
                time.sleep(0.02)
            assert read(item.pk) == 2
            assert waiting() == 0


def test_log_command_reports_the_backlog(transactional_db: None) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("triggers need PostgreSQL")
    with override_settings(FRESHCACHE={"STORE": store_url("memory"), "RELAY": False}):
        clear_log()
        Item.objects.create(name="e", value=1)  # no relay runs: the row waits
        out = io.StringIO()
        call_command("freshcache", "log", "--json", stdout=out)
        report = json.loads(out.getvalue())
        assert report["waiting"] == 1
        assert report["triggers"] == "ok"
        assert report["oldest_seconds"] is not None and report["oldest_seconds"] < 60


# -- what the database writes is what counts (found by trying it as a new user) ---------------


def _sql(statement: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement)


def test_a_before_trigger_that_moves_a_row_is_not_hidden_by_the_writers_bump(
    transactional_db: None,
) -> None:
    """A BEFORE INSERT trigger sends the comment to another post than the ORM assigned: the
    writer's bump covers the post it assigned, so it must not claim the log row, and a relay
    applies the row (the other post's comment listing misses and shows the comment)."""
    if connection.vendor != "postgresql":
        pytest.skip("triggers need PostgreSQL")
    from blog.models import Author, Comment, Post

    with override_settings(FRESHCACHE={"STORE": store_url("memory")}):
        ann = Author.objects.create(name="Ann", slug="ann")
        p1 = Post.objects.create(author=ann, title="one", slug="one", body="x")
        p2 = Post.objects.create(author=ann, title="two", slug="two", body="x")

        @cached
        def comments(post_id: int) -> list[str]:
            return list(Comment.objects.filter(post_id=post_id).values_list("body", flat=True))

        assert comments(p2.pk) == []
        _sql(
            "CREATE FUNCTION fc_test_redirect() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.author_name = 'redirect' THEN NEW.post_id := {p2.pk}; END IF; "
            "RETURN NEW; END $$"
        )
        _sql(
            "CREATE TRIGGER fc_test_redirect BEFORE INSERT ON blog_comment FOR EACH ROW "
            "EXECUTE FUNCTION fc_test_redirect()"
        )
        try:
            Comment.objects.create(post=p1, author_name="redirect", body="moved")
            deadline = time.monotonic() + 5
            while comments(p2.pk) != ["moved"]:
                assert time.monotonic() < deadline, "the comment never showed on post two"
                time.sleep(0.02)
        finally:
            _sql("DROP TRIGGER fc_test_redirect ON blog_comment")
            _sql("DROP FUNCTION fc_test_redirect()")


def test_a_renamed_column_never_makes_a_write_fail(transactional_db: None) -> None:
    """The triggers name the keyed columns they record; a column renamed since they were
    installed (a migration, a DBA) must not break writes: the row is logged without values."""
    if connection.vendor != "postgresql":
        pytest.skip("triggers need PostgreSQL")
    import psycopg

    params = connection.get_connection_params()
    outside = psycopg.connect(
        host=params["host"], port=params["port"], user=params["user"], dbname=params["dbname"],
        autocommit=True,
    )
    try:
        outside.execute("ALTER TABLE blog_author RENAME COLUMN slug TO slug_renamed")
        clear_log()
        outside.execute(
            "INSERT INTO blog_author (name, slug_renamed, bio) VALUES ('Zed', 'zed', '')"
        )
        row = outside.execute("SELECT tbl, op, old, new FROM freshcache_log").fetchall()
        assert row == [("blog_author", "INSERT", None, None)]  # values unknown: wildcards
    finally:
        outside.execute("ALTER TABLE blog_author RENAME COLUMN slug_renamed TO slug")
        outside.close()


def test_a_column_this_code_does_not_key_is_bumped_by_wildcard(transactional_db: None) -> None:
    """Newer code installed the trigger with a keyed column this process does not know (a
    rolling deploy): its readers are reached through that column's wildcard."""
    from freshcache.log import decode

    row = {
        "id": 1, "source": "trigger", "tbl": "blog_author", "op": "UPDATE",
        "columns": "id,slug,nickname", "old": [[3, "ann", "a"]], "new": [[3, "ann", "b"]],
    }
    assert "blog.author?nickname=*" in decode(row, "default")
