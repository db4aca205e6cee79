"""The PostgreSQL triggers that feed the invalidation log, observed from the catalog and from
the log rows a write leaves, for writers Django never sees (a psycopg connection, as ``psql``).

Installed by ``migrate`` for the test database; tests that remove or change them put the suite's
own back (``restore_triggers``).
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.db import ProgrammingError, connection, transaction
from django.test import override_settings

from blog.models import Author, Comment, Post
from freshcache.capture.tables import registry
from freshcache.log import relay, triggers
from freshcache.log.triggers import MAX_ROWS

from .conftest import clear_log, decoded, log_rows

pytestmark = [pytest.mark.postgres]

COMMENT_WILDCARDS = {"blog.comment", "blog.comment:*", "blog.comment?post_id=*"}


def seed(conn: psycopg.Connection[Any]) -> None:
    """Authors 1 and 2, posts 7 (by 1) and 8 (by 2), then an empty log."""
    conn.execute("INSERT INTO blog_author (id, name, slug, bio) VALUES (1, 'Ann', 'ann', ''), "
                 "(2, 'Bob', 'bob', '')")
    conn.execute(
        "INSERT INTO blog_post (id, author_id, title, slug, body, published_at, view_count) "
        "VALUES (7, 1, 'Seven', 'seven', '', now(), 0), (8, 2, 'Eight', 'eight', '', now(), 0)"
    )
    for table in ("blog_author", "blog_post"):
        conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                     f"(SELECT max(id) FROM {table}))")
    conn.execute("DELETE FROM freshcache_log")


def add_comments(conn: psycopg.Connection[Any], post: int, n: int) -> None:
    conn.execute(
        "INSERT INTO blog_comment (post_id, author_name, body, created_at, approved) "
        "SELECT %s, 'x', 'b', now(), true FROM generate_series(1, %s)",
        [post, n],
    )


def comment(conn: psycopg.Connection[Any], post: int) -> int:
    row = conn.execute(
        "INSERT INTO blog_comment (post_id, author_name, body, created_at, approved) "
        "VALUES (%s, 'x', 'hello', now(), true) RETURNING id",
        [post],
    ).fetchone()
    assert row is not None
    return int(row[0])


def trigger_names() -> dict[str, set[str]]:
    """table -> the names of the freshcache triggers on it (from the catalog)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE t.tgname LIKE 'freshcache_log_%%'"
        )
        found: dict[str, set[str]] = {}
        for table, name in cursor.fetchall():
            found.setdefault(table, set()).add(name)
        return found


def trigger_functions() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_proc WHERE proname LIKE 'freshcache_log_%%'")
        return int(cursor.fetchone()[0])


FOUR = {"freshcache_log_ins", "freshcache_log_upd", "freshcache_log_del", "freshcache_log_trunc"}


# -- install, status, uninstall ----------------------------------------------------------------


def test_status_names_every_tracked_table_with_its_keyed_columns(transactional_db: None) -> None:
    states = triggers.status()
    assert [s.table for s in states] == sorted(registry().tables)
    assert {s.state for s in states} == {"ok"}
    by_table = {s.table: s.columns for s in states}
    assert by_table["blog_comment"] == ("id", "post_id")
    assert by_table["blog_post"] == ("id", "author_id", "slug")
    assert by_table["capture_app_token"] == ("id", "owner_id")
    assert by_table["capture_app_restaurant"] == ("place_ptr_id",)
    assert "freshcache_log" not in by_table and "django_session" not in by_table  # excluded


def test_install_is_idempotent(restore_triggers: None) -> None:
    before = triggers.status()
    assert triggers.install() == before
    assert triggers.install() == before
    names = trigger_names()
    assert set(names) == set(registry().tables)
    assert all(found == FOUR for found in names.values())
    assert trigger_functions() == len(registry().tables)


def test_a_dropped_or_disabled_trigger_is_missing_and_install_puts_it_back(
    outside: psycopg.Connection[Any], restore_triggers: None
) -> None:
    outside.execute("DROP TRIGGER freshcache_log_ins ON blog_comment")
    outside.execute("ALTER TABLE blog_tag DISABLE TRIGGER freshcache_log_del")
    triggers.triggered_tables.cache_clear()
    states = {s.table: s.state for s in triggers.status()}
    assert {t for t, s in states.items() if s != "ok"} == {"blog_comment", "blog_tag"}
    assert states["blog_comment"] == states["blog_tag"] == "missing"
    # The ORM must not count on a table whose inserts are not logged: it logs them itself.
    assert "blog_comment" not in triggers.triggered_tables("default")
    assert {s.state for s in triggers.install()} == {"ok"}
    assert trigger_names()["blog_comment"] == FOUR
    assert "blog_comment" in triggers.triggered_tables("default")


def test_outdated_when_keyed_columns_change(
    outside: psycopg.Connection[Any], restore_triggers: None
) -> None:
    seed(outside)
    with override_settings(FRESHCACHE={"PREDICATE_FIELDS": ["blog.Comment.author_name"]}):
        states = {s.table: (s.state, s.columns) for s in triggers.status()}
        assert states["blog_comment"] == ("outdated", ("id", "post_id", "author_name"))
        assert {t for t, (s, _) in states.items() if s != "ok"} == {"blog_comment"}
        # An outdated trigger still logs; the column it does not record is reached through
        # its wildcard.
        cid = comment(outside, 7)
        assert decoded(log_rows()) == {
            "blog.comment", f"blog.comment:{cid}", "blog.comment?post_id=7",
            "blog.comment?author_name=*",
        }  # fmt: skip
        clear_log()
        assert {s.state for s in triggers.install()} == {"ok"}
        cid = comment(outside, 7)
        assert decoded(log_rows()) == {
            "blog.comment", f"blog.comment:{cid}", "blog.comment?post_id=7",
            "blog.comment?author_name=x",
        }  # fmt: skip
    states = {s.table: s.state for s in triggers.status()}
    assert states["blog_comment"] == "outdated"  # installed for other settings than these


def test_outdated_when_volatile_fields_change(
    outside: psycopg.Connection[Any], restore_triggers: None
) -> None:
    seed(outside)
    with override_settings(FRESHCACHE={"VOLATILE_FIELDS": ["blog.Post.view_count"]}):
        states = {s.table: s.state for s in triggers.status()}
        assert {t for t, s in states.items() if s != "ok"} == {"blog_post"}
        assert states["blog_post"] == "outdated"
        outside.execute("UPDATE blog_post SET view_count = view_count + 1 WHERE id = 7")
        assert len(log_rows()) == 1  # the old trigger logs it
        clear_log()
        triggers.install()
        outside.execute("UPDATE blog_post SET view_count = view_count + 1 WHERE id = 7")
        assert log_rows() == []  # only a volatile column changed
        outside.execute("UPDATE blog_post SET view_count = 0, title = 'Seven!' WHERE id = 7")
        assert decoded(log_rows()) == {
            "blog.post", "blog.post:7", "blog.post?author_id=1", "blog.post?slug=seven",
        }  # fmt: skip
        # Past MAX_ROWS rows are not compared: logged, with every wildcard.
        outside.execute(
            "INSERT INTO blog_post (author_id, title, slug, body, published_at, view_count) "
            "SELECT 1, 't', 'bulk-' || g, '', now(), 0 FROM generate_series(1, %s) g",
            [MAX_ROWS],
        )
        clear_log()
        outside.execute("UPDATE blog_post SET view_count = view_count + 1 WHERE id > 8")
        assert log_rows() == []  # 1000 rows, volatile only
        outside.execute("UPDATE blog_post SET view_count = view_count + 1")
        assert decoded(log_rows()) == {
            "blog.post", "blog.post:*", "blog.post?author_id=*", "blog.post?slug=*",
        }  # fmt: skip


def test_a_table_with_volatile_columns_logs_every_operation(
    outside: psycopg.Connection[Any], restore_triggers: None
) -> None:
    """Its trigger compares old and new rows on UPDATE only: INSERT, DELETE and TRUNCATE, which
    have one transition table or none, are written and logged like on any table."""
    seed(outside)
    with override_settings(FRESHCACHE={"VOLATILE_FIELDS": ["blog.Post.view_count"]}):
        triggers.install()
        outside.execute(
            "INSERT INTO blog_post (id, author_id, title, slug, body, published_at, view_count) "
            "VALUES (9, 1, 'Nine', 'nine', '', now(), 0)"
        )
        outside.execute("DELETE FROM blog_post WHERE id = 9")
        outside.execute("TRUNCATE blog_post CASCADE")
        ops = [(r["tbl"], r["op"]) for r in log_rows() if r["tbl"] == "blog_post"]
        assert ops == [("blog_post", "INSERT"), ("blog_post", "DELETE"), ("blog_post", "TRUNCATE")]
        author = Author.objects.create(name="Cy", slug="cy")
        Post.objects.create(author=author, title="t", slug="t", body="")  # the ORM's too


def test_uninstall_removes_every_trigger_and_function(
    outside: psycopg.Connection[Any], restore_triggers: None
) -> None:
    seed(outside)
    outside.execute("DROP TRIGGER freshcache_log_upd ON blog_tag")  # a partial install too
    assert triggers.uninstall() == len(registry().tables)
    assert trigger_names() == {}
    assert trigger_functions() == 0
    assert {s.state for s in triggers.status()} == {"missing"}
    assert triggers.triggered_tables("default") == frozenset()
    comment(outside, 7)
    assert log_rows() == []
    assert triggers.uninstall() == 0


def test_install_refuses_without_the_log_table(outside: psycopg.Connection[Any]) -> None:
    """Triggers writing to a table that does not exist would make every write fail."""

    class Undo(Exception):
        pass

    with pytest.raises(Undo), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE freshcache_log RENAME TO freshcache_log_gone")
        with pytest.raises(ProgrammingError, match=r"run `manage\.py migrate` first"):
            triggers.install()
        raise Undo
    assert {s.state for s in triggers.status()} == {"ok"}


def test_writes_succeed_when_the_log_table_is_gone(outside: psycopg.Connection[Any]) -> None:
    """``migrate freshcache 0001`` drops the log and leaves the triggers: writes go on."""
    seed(outside)
    with outside.transaction(force_rollback=True):
        outside.execute("ALTER TABLE freshcache_log RENAME TO freshcache_log_gone")
        outside.execute("TRUNCATE blog_comment")
        comment(outside, 7)
        outside.execute("UPDATE blog_post SET title = 'x'")
        outside.execute("DELETE FROM blog_comment")


# -- the management command --------------------------------------------------------------------


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("freshcache", *args, stdout=out, no_color=True)
    return out.getvalue()


def test_command_status_prints_each_table(restore_triggers: None) -> None:
    lines = run("changefeed", "status").splitlines()
    assert len(lines) == len(registry().tables)
    comment_line = next(ln for ln in lines if ln.startswith("blog_comment "))
    assert comment_line.split() == ["blog_comment", "ok", "id,", "post_id"]
    triggers.uninstall()
    lines = run("changefeed", "status").splitlines()
    assert lines[-1] == (
        f"{len(registry().tables)} table(s) without current triggers: run "
        "`manage.py freshcache changefeed install`"
    )
    assert run("changefeed", "install").splitlines()[-1] == (
        f"triggers installed on {len(registry().tables)} table(s)"
    )
    assert run("changefeed", "uninstall") == (
        f"removed the triggers of {len(registry().tables)} table(s)\n"
    )


def test_command_json_parses(outside: psycopg.Connection[Any]) -> None:
    states = json.loads(run("changefeed", "status", "--json"))
    assert {"table": "blog_comment", "state": "ok", "columns": ["id", "post_id"]} in states
    assert len(states) == len(registry().tables)
    seed(outside)
    comment(outside, 7)
    comment(outside, 8)
    report = json.loads(run("log", "--json"))
    assert report["database"] == "default"
    assert report["waiting"] == 2
    assert report["triggers"] == "ok"
    assert isinstance(report["oldest_seconds"], float)


def test_command_relay_once_drains(outside: psycopg.Connection[Any]) -> None:
    seed(outside)
    comment(outside, 7)
    with override_settings(FRESHCACHE={"STORE": "memory://", "RELAY": False}):
        assert run("relay", "--once") == "1 log row(s) read, 1 applied\n"
    assert log_rows() == []


# -- what a write outside Django logs ----------------------------------------------------------


def test_outside_writes_log_precise_tags(outside: psycopg.Connection[Any]) -> None:
    seed(outside)
    cid = comment(outside, 7)
    rows = log_rows()
    assert [(r["source"], r["tbl"], r["op"]) for r in rows] == [
        ("trigger", "blog_comment", "INSERT")
    ]
    assert decoded(rows) == {"blog.comment", f"blog.comment:{cid}", "blog.comment?post_id=7"}

    clear_log()
    outside.execute("UPDATE blog_comment SET post_id = 8 WHERE id = %s", [cid])
    assert decoded(log_rows()) == {
        "blog.comment", f"blog.comment:{cid}", "blog.comment?post_id=7", "blog.comment?post_id=8",
    }  # fmt: skip

    clear_log()
    outside.execute("UPDATE blog_comment SET body = 'edited' WHERE id = %s", [cid])
    assert decoded(log_rows()) == {"blog.comment", f"blog.comment:{cid}", "blog.comment?post_id=8"}

    clear_log()
    outside.execute("UPDATE blog_post SET slug = 'seven-2' WHERE id = 7")
    assert decoded(log_rows()) == {
        "blog.post", "blog.post:7", "blog.post?author_id=1", "blog.post?slug=seven",
        "blog.post?slug=seven-2",
    }  # fmt: skip

    clear_log()
    outside.execute("DELETE FROM blog_comment WHERE id = %s", [cid])
    assert decoded(log_rows()) == {"blog.comment", f"blog.comment:{cid}", "blog.comment?post_id=8"}

    clear_log()
    outside.execute("UPDATE blog_comment SET body = 'none' WHERE id = -1")
    outside.execute("DELETE FROM blog_comment WHERE id = -1")
    assert log_rows() == []  # statements that touch no row log nothing


def test_outside_write_tags_equal_the_orm_write_of_the_same_change(
    outside: psycopg.Connection[Any],
) -> None:
    """The tags a relay bumps for a ``psql`` write are the tags the ORM bumps for it."""
    from freshcache.testing import hook

    seed(outside)
    cid = comment(outside, 7)
    bumped: set[str] = set()
    with override_settings(FRESHCACHE={"STORE": "memory://", "RELAY": False}), hook(
        "before_bump", lambda tags, **_: bumped.update(tags)
    ):
        c = Comment.objects.get(pk=cid)
        c.post = Post.objects.get(pk=8)
        c.save()
    assert bumped == {
        "blog.comment", f"blog.comment:{cid}", "blog.comment?post_id=7", "blog.comment?post_id=8",
    }  # fmt: skip
    clear_log()
    outside.execute("UPDATE blog_comment SET post_id = 7 WHERE id = %s", [cid])
    assert decoded(log_rows()) == bumped


def test_copy_is_logged(outside: psycopg.Connection[Any]) -> None:
    seed(outside)
    with outside.cursor() as cursor, cursor.copy(
        "COPY blog_comment (post_id, author_name, body, created_at, approved) FROM STDIN"
    ) as copy:
        copy.write_row((8, "copy", "copied", "2024-01-01T00:00:00Z", True))
        copy.write_row((8, "copy", "copied", "2024-01-01T00:00:00Z", True))
    rows = log_rows()
    assert [(r["tbl"], r["op"]) for r in rows] == [("blog_comment", "INSERT")]
    ids = [c.pk for c in Comment.objects.order_by("pk")]
    assert decoded(rows) == {"blog.comment", "blog.comment?post_id=8"} | {
        f"blog.comment:{i}" for i in ids
    }


# -- many rows: one log row per statement ------------------------------------------------------


def test_a_10000_row_update_writes_one_log_row(outside: psycopg.Connection[Any]) -> None:
    seed(outside)
    add_comments(outside, 7, 10_000)
    rows = log_rows()
    assert len(rows) == 1 and rows[0]["new"] is None  # past MAX_ROWS: no values
    clear_log()
    outside.execute("UPDATE blog_comment SET body = 'all' WHERE post_id = 7")
    rows = log_rows()
    assert [(r["tbl"], r["op"], r["old"], r["new"]) for r in rows] == [
        ("blog_comment", "UPDATE", None, None)
    ]
    assert decoded(rows) == COMMENT_WILDCARDS

    # The same through the ORM: one trigger row, no row of freshcache's own.
    clear_log()
    with override_settings(FRESHCACHE={"STORE": "memory://", "RELAY": False}):
        assert Comment.objects.filter(post_id=7).update(body="orm") == 10_000
    rows = log_rows()
    assert [(r["source"], r["tbl"], r["op"]) for r in rows] == [
        ("trigger", "blog_comment", "UPDATE")
    ]
    assert decoded(rows) == COMMENT_WILDCARDS


@pytest.mark.parametrize(("n", "recorded"), [(MAX_ROWS, True), (MAX_ROWS + 1, False)])
def test_values_are_recorded_up_to_max_rows(
    outside: psycopg.Connection[Any], n: int, recorded: bool
) -> None:
    seed(outside)
    add_comments(outside, 8, n)
    clear_log()
    outside.execute("DELETE FROM blog_comment WHERE post_id = 8")
    (row,) = log_rows()
    if recorded:
        assert len(json.loads(row["old"])) == n
        tags = decoded([row])
        assert "blog.comment?post_id=8" in tags and "blog.comment?post_id=*" not in tags
        assert len(tags) == n + 2
    else:
        assert row["old"] is None
        assert decoded([row]) == COMMENT_WILDCARDS


# -- TRUNCATE and cascades defined in SQL ------------------------------------------------------


def test_truncate_is_logged_as_every_wildcard(outside: psycopg.Connection[Any]) -> None:
    seed(outside)
    comment(outside, 7)
    clear_log()
    outside.execute("TRUNCATE blog_comment")
    rows = log_rows()
    assert [(r["tbl"], r["op"]) for r in rows] == [("blog_comment", "TRUNCATE")]
    assert decoded(rows) == COMMENT_WILDCARDS

    clear_log()
    outside.execute("TRUNCATE blog_post CASCADE")  # and every table referencing it
    tables = {r["tbl"] for r in log_rows()}
    assert {"blog_post", "blog_comment", "blog_post_tags"} <= tables
    assert all(r["op"] == "TRUNCATE" for r in log_rows())
    assert {"blog.post:*", "blog.post?slug=*", "blog.post_tags?tag_id=*"} <= decoded(log_rows())


@pytest.fixture
def sql_cascade(outside: psycopg.Connection[Any]) -> Any:
    """``blog_comment.post_id`` gains a foreign key with ``ON DELETE CASCADE`` (Django's own
    constraint, deferred, is still checked at commit: the cascade has satisfied it by then)."""
    outside.execute(
        "ALTER TABLE blog_comment ADD CONSTRAINT fc_test_cascade FOREIGN KEY (post_id) "
        "REFERENCES blog_post (id) ON DELETE CASCADE"
    )
    yield
    outside.execute("ALTER TABLE blog_comment DROP CONSTRAINT fc_test_cascade")


def test_on_delete_cascade_in_sql_is_logged(
    outside: psycopg.Connection[Any], sql_cascade: None
) -> None:
    seed(outside)
    c1, c2, c3 = comment(outside, 7), comment(outside, 7), comment(outside, 8)
    clear_log()
    outside.execute("DELETE FROM blog_post WHERE id = 7")
    rows = log_rows()
    assert sorted((r["tbl"], r["op"]) for r in rows) == [
        ("blog_comment", "DELETE"), ("blog_post", "DELETE"),
    ]  # fmt: skip
    assert decoded(rows) == {
        "blog.post", "blog.post:7", "blog.post?author_id=1", "blog.post?slug=seven",
        "blog.comment", f"blog.comment:{c1}", f"blog.comment:{c2}", "blog.comment?post_id=7",
    }  # fmt: skip
    assert f"blog.comment:{c3}" not in decoded(rows)


def test_a_django_write_leaves_the_sql_cascade_row_to_the_relay(
    outside: psycopg.Connection[Any], sql_cascade: None
) -> None:
    """The writer's bump covers its own statement only: the comments the database deleted are
    not in its tags, so their row is not marked, and a relay bumps it."""
    from freshcache.testing import hook

    seed(outside)
    cid = comment(outside, 7)
    clear_log()
    bumped: set[str] = set()
    with override_settings(FRESHCACHE={"STORE": "memory://", "RELAY": False}), hook(
        "before_bump", lambda tags, **_: bumped.update(tags)
    ):
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM blog_post WHERE id = 7")
        assert f"blog.comment:{cid}" not in bumped
        rows = {r["tbl"]: r for r in log_rows()}
        assert set(rows) == {"blog_post", "blog_comment"}
        assert relay.drain("default") == (2, 1, pytest.approx(0, abs=60))
        assert f"blog.comment:{cid}" in decoded([rows["blog_comment"]])


# -- rights --------------------------------------------------------------------------------------


@pytest.fixture
def writer_role(outside: psycopg.Connection[Any]) -> Any:
    """A role that may write blog_comment and nothing of freshcache's (dropped afterwards)."""
    role = f"fc_test_writer_{os.getpid()}"
    outside.execute(f"DROP ROLE IF EXISTS {role}")
    outside.execute(f"CREATE ROLE {role} NOLOGIN")
    outside.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON blog_comment TO {role}")
    outside.execute(f"GRANT USAGE ON SEQUENCE blog_comment_id_seq TO {role}")
    yield role
    outside.execute("RESET ROLE")
    outside.execute(f"DROP OWNED BY {role}")
    outside.execute(f"DROP ROLE {role}")


def test_a_role_without_rights_on_the_log_still_writes(
    outside: psycopg.Connection[Any], writer_role: str
) -> None:
    seed(outside)
    (allowed,) = outside.execute(
        "SELECT has_table_privilege(%s, 'freshcache_log', 'INSERT')", [writer_role]
    ).fetchone() or (None,)
    assert allowed is False
    outside.execute(f"SET ROLE {writer_role}")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        outside.execute("SELECT count(*) FROM freshcache_log")
    cid = comment(outside, 7)
    outside.execute("UPDATE blog_comment SET post_id = 8 WHERE id = %s", [cid])
    outside.execute("DELETE FROM blog_comment WHERE id = %s", [cid])
    outside.execute("RESET ROLE")
    assert [(r["tbl"], r["op"]) for r in log_rows()] == [
        ("blog_comment", "INSERT"), ("blog_comment", "UPDATE"), ("blog_comment", "DELETE"),
    ]  # fmt: skip
    assert decoded(log_rows()) == {
        "blog.comment", f"blog.comment:{cid}", "blog.comment?post_id=7", "blog.comment?post_id=8",
    }  # fmt: skip
