"""A cache never makes a write fail (issue 9, item 1).

The writes of the issue itself, through a proxy; then faults planted in freshcache's own
bookkeeping around a write, before and after the statement, on every kind of statement: the
write still happens exactly once, what it changed is invalidated (the table, when the rows cannot
be named), and one WARNING names the model and the reason. Errors of the user's own statement
propagate exactly as without freshcache.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from typing import Any

import django
import pytest
from django.db import DatabaseError, connection, models, transaction
from django.test.utils import CaptureQueriesContext

from freshcache import cached
from freshcache.capture import install, raw, reads, uninstall, write_guard, writes
from tests.capture.conftest import Watch
from tests.shapes_app.models import Category, Post, PostProxy
from tests.shapes_app.view import view_model

pytestmark = [pytest.mark.postgres]


@pytest.fixture
def posts(memory_store: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setattr(write_guard, "_warned", set())  # "once per process" starts afresh
    c = Category.objects.create(name="c")
    other = Category.objects.create(name="other")
    p = Post.objects.create(title="p", category=c, slug="p")
    q = Post.objects.create(title="q", category=c, slug="q")
    return {"c": c, "other": other, "p": p, "q": q}


def post_watch(*posts: Post) -> Watch:
    readers: dict[str, Callable[[], Any]] = {
        f"pk{p.pk}": (lambda pk=p.pk: list(Post.objects.filter(pk=pk).values_list("title")))
        for p in posts
    }
    readers["all"] = lambda: sorted(Post.objects.values_list("title", flat=True))
    return Watch(**readers)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "freshcache"]


def statements(queries: CaptureQueriesContext, verb: str) -> int:
    """How many ``verb`` statements on the post table ran."""
    prefix = {"UPDATE": "UPDATE", "DELETE": "DELETE FROM", "INSERT": "INSERT INTO"}[verb]
    return sum(q["sql"].startswith(f'{prefix} "shapes_app_post"') for q in queries.captured_queries)


def test_the_writes_of_the_issue_through_a_proxy(posts: dict[str, Any]) -> None:
    p, c = posts["p"], posts["c"]
    w = post_watch(p, posts["q"])
    w.warm()
    PostProxy.objects.filter(pk=p.pk).update(title="x")
    assert Post.objects.get(pk=p.pk).title == "x"
    assert w.invalidated() == {f"pk{p.pk}", "all"}
    PostProxy.objects.get(pk=p.pk).delete()
    assert not Post.objects.filter(pk=p.pk).exists()
    assert w.invalidated() == {f"pk{p.pk}", "all"}
    PostProxy.objects.filter(category=c).delete()
    assert not Post.objects.exists()
    assert w.invalidated() == {f"pk{posts['q'].pk}", "all"}


@pytest.mark.parametrize("in_atomic", [False, True], ids=["autocommit", "atomic"])
def test_distinct_writes_are_precise_and_never_fail(
    posts: dict[str, Any], caplog: pytest.LogCaptureFixture, in_atomic: bool
) -> None:
    """``.distinct().update()``/``.delete()`` run fine without freshcache; the pre-read's
    ``FOR UPDATE`` refused DISTINCT, and inside a transaction that failed the write (review
    finding). DISTINCT does not change which rows are written: the pre-read drops it."""
    caplog.set_level(logging.WARNING, logger="freshcache")
    p, q = posts["p"], posts["q"]
    w = post_watch(p, q)
    w.warm()
    with transaction.atomic() if in_atomic else nullcontext():
        assert Post.objects.filter(pk=p.pk).distinct().update(title="x") == 1
    assert w.invalidated() == {f"pk{p.pk}", "all"}
    if django.VERSION >= (5, 0):  # Django 4.2 refuses delete() after distinct() itself
        with transaction.atomic() if in_atomic else nullcontext():
            Post.objects.filter(pk=q.pk).distinct().delete()
        assert w.invalidated() == {f"pk{q.pk}", "all"}
    assert warnings(caplog) == []  # understood, not a fallback to the whole table


# -- faults in the bookkeeping ---------------------------------------------------------------------


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("planted fault")


#: Where a fault is planted: before the statement (the pre-read), or after it (naming the tags).
FAULTS = {
    "before": ("_rows_before", "_rows_before"),
    "after": ("_row_tags", "_inserted"),
}

#: Each write kind: (run it, check it happened, the statement that must run once).
WRITES: dict[str, tuple[Callable[[dict[str, Any]], Any], Callable[[dict[str, Any]], bool], str]] = {
    "update": (
        lambda s: PostProxy.objects.filter(category=s["c"]).update(title="x"),
        lambda s: set(Post.objects.values_list("title", flat=True)) == {"x"},
        "UPDATE",
    ),
    "save": (
        lambda s: Post.objects.get(pk=s["p"].pk).save(),
        lambda s: True,
        "UPDATE",
    ),
    "delete": (
        lambda s: PostProxy.objects.filter(pk=s["p"].pk).delete(),
        lambda s: not Post.objects.filter(pk=s["p"].pk).exists(),
        "DELETE",
    ),
    "insert": (
        lambda s: PostProxy.objects.create(title="new", category=s["c"], slug="new"),
        lambda s: Post.objects.filter(slug="new").exists(),
        "INSERT",
    ),
}


@pytest.mark.parametrize("in_atomic", [False, True], ids=["autocommit", "atomic"])
@pytest.mark.parametrize("write", list(WRITES))
@pytest.mark.parametrize("when", list(FAULTS))
def test_a_fault_in_the_bookkeeping_never_fails_the_write(
    posts: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    when: str,
    write: str,
    in_atomic: bool,
) -> None:
    caplog.set_level(logging.WARNING, logger="freshcache")
    run, happened, verb = WRITES[write]
    name = FAULTS[when][1] if write == "insert" else FAULTS[when][0]
    if write == "insert" and when == "before":
        monkeypatch.setattr(writes, "needs_transaction", _boom)
    else:
        monkeypatch.setattr(writes, name, _boom)
    w = post_watch(posts["p"], posts["q"])
    w.warm()
    with CaptureQueriesContext(connection) as queries:
        if in_atomic:
            with transaction.atomic():
                run(posts)
        else:
            run(posts)
    assert happened(posts)
    assert statements(queries, verb) == 1  # the write ran once
    missed = w.invalidated()  # and every value served is the database's
    assert "all" in missed and f"pk{posts['p'].pk}" in missed  # the table was invalidated
    # One WARNING per model and reason (a delete also writes the m2m through table).
    messages = warnings(caplog)
    assert len(messages) == len(set(messages)) >= 1
    assert all("RuntimeError" in m for m in messages), messages
    assert any(
        "a write through shapes_app." in m
        and "every cached read of table shapes_app_post is invalidated instead" in m
        for m in messages
    ), messages


def test_the_warning_is_logged_once_per_model_and_reason(
    posts: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="freshcache")
    monkeypatch.setattr(writes, "_rows_before", _boom)
    PostProxy.objects.filter(pk=posts["p"].pk).update(title="1")
    PostProxy.objects.filter(category=posts["c"]).update(title="2")
    assert len(warnings(caplog)) == 1
    Post.objects.filter(pk=posts["p"].pk).update(title="3")  # another model
    assert len(warnings(caplog)) == 2
    monkeypatch.setattr(writes, "_rows_before", lambda *a: 1 / 0)  # another reason
    Post.objects.filter(pk=posts["p"].pk).update(title="4")
    [*_, last] = warnings(caplog)
    assert len(warnings(caplog)) == 3 and "ZeroDivisionError" in last
    assert "a write through shapes_app.Post:" in last
    assert sorted(Post.objects.values_list("title", flat=True)) == ["2", "4"]


# -- the user's own errors -------------------------------------------------------------------------


def _outcome(fn: Callable[[], Any], in_atomic: bool) -> tuple[str, str, int]:
    """What ``fn`` raised (type, first line of the message) and how many writing statements
    were sent."""
    with CaptureQueriesContext(connection) as queries:
        try:
            if in_atomic:
                with transaction.atomic():
                    fn()
            else:
                fn()
        except DatabaseError as exc:
            error = (type(exc).__name__, str(exc).splitlines()[0])
        else:
            error = ("", "")
    ran = sum(q["sql"].split(" ", 1)[0] in WRITING for q in queries.captured_queries)
    return (*error, ran)


WRITING = ("UPDATE", "DELETE", "INSERT")


@pytest.fixture
def without_capture() -> Iterator[Callable[[Callable[[], Any]], Any]]:
    def run(fn: Callable[[], Any]) -> Any:
        uninstall()
        try:
            return fn()
        finally:
            install()

    yield run


FAILING: dict[str, Callable[[dict[str, Any]], Any]] = {
    "update: unique violation": lambda s: PostProxy.objects.filter(pk=s["p"].pk).update(slug="q"),
    "save: unique violation": lambda s: Post(
        pk=s["p"].pk, title="p", category=s["c"], slug="q"
    ).save(force_update=True),
    "insert: unique violation": lambda s: PostProxy.objects.create(
        title="z", category=s["c"], slug="q"
    ),
    "update: invalid regular expression": lambda s: Post.objects.filter(title__regex="(").update(
        title="x"
    ),
    "delete: foreign key violation": lambda s: Category.objects.filter(pk=s["c"].pk)._raw_delete(
        "default"
    ),
    "raw: unique violation": lambda s: connection.cursor().execute(
        "UPDATE shapes_app_post SET slug = 'q' WHERE id = %s", [s["p"].pk]
    ),
}


@pytest.mark.parametrize("in_atomic", [False, True], ids=["autocommit", "atomic"])
@pytest.mark.parametrize("fault", [False, True], ids=["", "with-a-fault-before"])
@pytest.mark.parametrize("case", list(FAILING))
def test_the_users_statement_fails_as_without_freshcache(
    posts: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    without_capture: Callable[[Callable[[], Any]], Any],
    case: str,
    fault: bool,
    in_atomic: bool,
) -> None:
    fn = FAILING[case]
    before = sorted(Post.objects.values_list("pk", "title", "slug"))
    expected = without_capture(lambda: _outcome(lambda: fn(posts), in_atomic))
    assert expected[0], f"{case} did not fail without freshcache"
    if fault:
        monkeypatch.setattr(writes, "_rows_before", _boom)
    got = _outcome(lambda: fn(posts), in_atomic)
    if case == "update: invalid regular expression" and in_atomic and not fault:
        # The pre-read (with the statement's own WHERE) met the error first, and PostgreSQL
        # aborted the caller's transaction: the same error, raised one statement earlier.
        assert got == (*expected[:2], 0)
    else:
        assert got == expected
    assert sorted(Post.objects.values_list("pk", "title", "slug")) == before


# -- raw SQL and reads -----------------------------------------------------------------------------


def test_a_fault_around_raw_sql_runs_it_once_and_invalidates_everything(
    posts: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="freshcache")
    monkeypatch.setattr(raw, "parse", _boom)
    w = post_watch(posts["p"], posts["q"])
    w.warm()
    with CaptureQueriesContext(connection) as queries, connection.cursor() as cursor:
        cursor.execute("UPDATE shapes_app_post SET title = 'raw' WHERE id = %s", [posts["p"].pk])
    assert sum("SET title = 'raw'" in q["sql"] for q in queries.captured_queries) == 1
    assert Post.objects.get(pk=posts["p"].pk).title == "raw"
    assert w.invalidated() == {f"pk{posts['p'].pk}", f"pk{posts['q'].pk}", "all"}
    [message] = warnings(caplog)
    assert "raw SQL" in message and "RuntimeError" in message


def test_a_fault_analysing_a_read_serves_the_value_and_stores_nothing(
    posts: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="freshcache")
    monkeypatch.setattr(reads, "query_tags", _boom)

    @cached
    def titles() -> list[str]:
        return sorted(Post.objects.values_list("title", flat=True))

    outcome = titles.outcome()  # type: ignore[attr-defined]
    assert outcome.value == ["p", "q"] and not outcome.stored
    [message] = warnings(caplog)
    assert "a read of shapes_app.Post" in message and "RuntimeError" in message
    Post.objects.filter(pk=posts["p"].pk).update(title="z")
    assert titles() == ["q", "z"]


def test_a_view_that_refuses_row_locks_falls_back_to_the_table(
    memory_store: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``SELECT ... FOR UPDATE`` on a ``DISTINCT`` view fails; the write goes on, inside the
    caller's transaction too (the pre-read of an unmanaged model runs in a savepoint)."""
    caplog.set_level(logging.WARNING, logger="freshcache")
    monkeypatch.setattr(write_guard, "_warned", set())
    with view_model() as view:
        c = Category.objects.create(name="c")
        row = view._base_manager.create(title="v", code="view-guard", category_id=c.pk)
        w = Watch(row=lambda: list(view._base_manager.filter(pk=row.pk).values_list("title")))
        w.warm()
        with transaction.atomic():
            view._base_manager.filter(category_id=c.pk).update(title="w")
        assert w.invalidated() == {"row"}
        with transaction.atomic():
            view._base_manager.filter(pk=row.pk).delete()
        assert w.invalidated() == {"row"}
    [message] = warnings(caplog)
    assert "shapes_app.ViewRow" in message and "FOR UPDATE" in message


def test_an_orm_write_to_a_table_no_registered_model_maps_is_invalidated(
    memory_store: Any,
) -> None:
    """A model the registry does not know (defined after it was built, or a historical model of
    a removed one) writing to a table raw SQL reads: the write bumps ``db_table:<name>``, as
    raw SQL writes do (review finding: it bumped nothing)."""
    import uuid

    from django.apps.registry import Apps

    table = f"fc_adhoc_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {table} (id serial PRIMARY KEY, name text)")
        cursor.execute(f"INSERT INTO {table} (name) VALUES ('a')")
    try:
        adhoc = type(
            f"Adhoc{table[-8:]}",
            (models.Model,),
            {
                "__module__": __name__,
                "name": models.TextField(),
                # A registry of its own: the model never joins the project's apps.
                "Meta": type("Meta", (), {"app_label": "shapes_app", "managed": False,
                                          "db_table": table, "apps": Apps()}),
            },
        )  # fmt: skip

        @cached
        def names() -> list[str]:
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT name FROM {table} ORDER BY id")
                return [n for (n,) in cursor.fetchall()]

        assert names() == ["a"] and names.outcome().hit
        adhoc.objects.update(name="b")
        assert names() == ["b"]
        adhoc.objects.create(name="c")
        assert names() == ["b", "c"]
        adhoc.objects.filter(name="b").delete()
        assert names() == ["c"]
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE {table}")
