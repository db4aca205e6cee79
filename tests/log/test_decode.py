"""What a log row invalidates, for rows the triggers write and for rows nobody should have
written: a row that cannot be understood invalidates more (its table's wildcards, or every
tracked table), never less, and never makes ``decode`` or the relay raise."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from django.test import override_settings

from freshcache import cached, counters
from freshcache.capture.tables import registry
from freshcache.log import decode, relay

from .conftest import log_rows

COMMENT_WILDCARDS = {"blog.comment", "blog.comment:*", "blog.comment?post_id=*"}
TOKEN_WILDCARDS = {"capture_app.token", "capture_app.token:*", "capture_app.token?owner_id=*"}
AUTHOR_WILDCARDS = {"blog.author", "blog.author:*", "blog.author?slug=*"}


def everything() -> set[str]:
    tags: set[str] = set()
    for info in registry().tables.values():
        tags |= info.all_wildcards("default")
    return tags


def trigger_row(tbl: str, columns: str, old: Any, new: Any, op: str = "UPDATE") -> dict[str, Any]:
    """A row as the relay reads it through Django's cursor: JSON columns as text."""
    return {
        "id": 1,
        "source": "trigger",
        "tbl": tbl,
        "op": op,
        "columns": columns,
        "old": None if old is None else json.dumps(old),
        "new": None if new is None else json.dumps(new),
        "tags": "",
    }


# -- well-formed rows --------------------------------------------------------------------------


def test_a_trigger_row_names_old_and_new_values() -> None:
    row = trigger_row("blog_comment", "id,post_id", [[3, 7]], [[3, 8]])
    assert decode(row, "default") == {
        "blog.comment", "blog.comment:3", "blog.comment?post_id=7", "blog.comment?post_id=8",
    }  # fmt: skip
    # psycopg (outside Django) hands JSON over as Python values: the same tags.
    parsed = {**row, "old": [[3, 7]], "new": [[3, 8]]}
    assert decode(parsed, "default") == decode(row, "default")


def test_values_are_named_as_the_orm_names_them() -> None:
    uuid = "5b1c8f9e-2a7d-4c3e-9f10-0123456789ab"
    row = trigger_row("capture_app_token", "id,owner_id", [], [[uuid, None]], op="INSERT")
    null = decode(trigger_row("capture_app_token", "id,owner_id", [], [[uuid, 1]]), "default")
    assert f"capture_app.token:{uuid}" in decode(row, "default")
    assert "capture_app.token?owner_id=1" in null
    slug = trigger_row("blog_author", "id,slug", [], [[1, "ünïcode"]], op="INSERT")
    (digested,) = {t for t in decode(slug, "default") if "?slug=" in t}
    assert digested.startswith("blog.author?slug=#")  # non-ASCII values are digested, as reads


def test_a_column_keyed_after_the_trigger_was_installed_is_wildcarded() -> None:
    row = trigger_row("blog_post", "id,slug", [[7, "seven"]], [[7, "seven"]])
    assert decode(row, "default") == {
        "blog.post", "blog.post:7", "blog.post?slug=seven", "blog.post?author_id=*",
    }  # fmt: skip


def test_django_rows_carry_their_tags() -> None:
    row = {"id": 1, "source": "django", "tbl": "", "op": "TAGS", "columns": "",
           "old": None, "new": None, "tags": "weather:london\nblog.post:7\n"}  # fmt: skip
    assert decode(row, "default") == {"weather:london", "blog.post:7"}


def test_too_many_rows_and_truncate_are_every_wildcard() -> None:
    assert decode(trigger_row("blog_comment", "id,post_id", None, None), "default") == (
        COMMENT_WILDCARDS
    )
    truncate = trigger_row("blog_comment", "id,post_id", [[1, 7]], [], op="TRUNCATE")
    assert decode(truncate, "default") == COMMENT_WILDCARDS


# -- rows that cannot be understood ------------------------------------------------------------

UUID_COLUMNS = "id,owner_id"


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        # values that are not what a trigger writes
        (trigger_row("capture_app_token", UUID_COLUMNS, [], [["not-a-uuid", 1]]), TOKEN_WILDCARDS),
        (trigger_row("blog_author", "id,slug", [], [[1, ["x"]]]), AUTHOR_WILDCARDS),
        (trigger_row("blog_author", "id,slug", [], [[1, {"x": 1}]]), AUTHOR_WILDCARDS),
        (trigger_row("blog_author", "id,slug", [], [[7.5, "x"]]), AUTHOR_WILDCARDS),
        # (a value that cannot be a key reaches its column's wildcard)
        (trigger_row("blog_comment", "id,post_id", [], [["seven", 7]]),
         {"blog.comment", "blog.comment:*", "blog.comment?post_id=7"}),
        # shapes that are not arrays of rows as wide as the columns
        (trigger_row("blog_author", "id,slug", [], ["7x"]), AUTHOR_WILDCARDS),
        (trigger_row("blog_author", "id,slug", [], {"7": "x"}), AUTHOR_WILDCARDS),
        (trigger_row("blog_comment", "id,post_id", [], [[1]]), COMMENT_WILDCARDS),
        (trigger_row("blog_comment", "id,post_id", [], [[1, 7, 9]]), COMMENT_WILDCARDS),
        (trigger_row("blog_comment", "id,post_id", 5, []), COMMENT_WILDCARDS),
        (trigger_row("blog_comment", "id,post_id", [], "[[1, 7]]"), COMMENT_WILDCARDS),
        (trigger_row("blog_comment", "", [[1, 7]], []), COMMENT_WILDCARDS),
        ({**trigger_row("blog_comment", "id,post_id", [], []), "new": "[[1, 7"},
         COMMENT_WILDCARDS),
        ({**trigger_row("blog_comment", "id,post_id", [], []), "old": None}, COMMENT_WILDCARDS),
        # an operation no trigger writes
        (trigger_row("blog_comment", "id,post_id", [[1, 7]], [], op="MERGE"), COMMENT_WILDCARDS),
        (trigger_row("blog_comment", "id,post_id", [[1, 7]], [], op=None), COMMENT_WILDCARDS),
    ],
    ids=[
        "bad-uuid", "list-value", "dict-value", "float-key", "text-for-integer",
        "row-is-a-string", "rows-are-a-dict", "row-too-narrow", "row-too-wide", "old-is-a-number",
        "new-is-double-encoded", "no-columns", "bad-json", "old-null-new-empty", "unknown-op",
        "no-op",
    ],
)  # fmt: skip
def test_malformed_rows_invalidate_their_whole_table(
    row: dict[str, Any], expected: set[str]
) -> None:
    assert decode(row, "default") == expected


@pytest.mark.parametrize(
    "row",
    [
        {"id": 1, "source": "psql", "tbl": "blog_comment", "tags": "blog.comment:1"},
        {"id": 1, "source": None},
        {"id": 1, "source": "trigger", "tbl": ""},
        {"id": 1, "source": "trigger", "tbl": None},
        {},
    ],
    ids=["unknown-source", "no-source", "trigger-without-table", "table-null", "empty"],
)
def test_rows_of_unknown_origin_invalidate_every_table(row: dict[str, Any]) -> None:
    assert decode(row, "default") == everything()


def test_a_table_no_model_maps_bumps_its_raw_sql_tag() -> None:
    """A table dropped since, or only ever written by raw SQL: raw readers of it depend on
    ``db_table:<name>`` (capture/raw.py)."""
    row = trigger_row("blog_oldmodel", "id", [[1]], [])
    assert decode(row, "default") == {"db_table:blog_oldmodel"}


def test_an_excluded_table_bumps_nothing() -> None:
    """Nothing reads an excluded table through freshcache's view: there is nothing to bump."""
    assert decode(trigger_row("django_session", "session_key", [["k"]], []), "default") == set()
    with override_settings(FRESHCACHE={"EXCLUDE": ["blog"]}):
        assert decode(trigger_row("blog_comment", "id,post_id", [[1, 7]], []), "default") == set()


# -- the relay with such rows ------------------------------------------------------------------


@pytest.mark.postgres
def test_drain_applies_malformed_rows_and_never_raises(
    outside: psycopg.Connection[Any], clean_log: None
) -> None:
    """Rows written by hand (or by a broken writer) are applied as more invalidation and
    deleted: none stays behind to block the rows after it."""
    outside.execute(
        "INSERT INTO blog_author (id, name, slug, bio) VALUES (1, 'Ann', 'ann', '')"
    )
    outside.execute("DELETE FROM freshcache_log")
    with override_settings(FRESHCACHE={"STORE": "memory://", "RELAY": False}):

        @cached(name="test-decode-author")
        def author_slug(pk: int) -> list[str]:
            from blog.models import Author

            return list(Author.objects.filter(pk=pk).values_list("slug", flat=True))

        @cached(name="test-decode-token")
        def tokens() -> int:
            from tests.capture_app.models import Token

            return Token.objects.count()

        assert author_slug(1) == ["ann"] and tokens() == 0
        assert author_slug.outcome(1).hit and tokens.outcome().hit
        for row in [
            ("trigger", "capture_app_token", "INSERT", "id,owner_id", "[]", '[["zz", 1]]', ""),
            ("trigger", "blog_author", "UPDATE", "id,slug", "[[1, [2]]]", "[]", ""),
            ("trigger", "blog_author", "UPDATE", "id,slug", '{"a": 1}', "[]", ""),
            ("psql", "", "", "", None, None, ""),
        ]:
            outside.execute(
                "INSERT INTO freshcache_log (source, tbl, op, columns, old, new, tags) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                row,
            )
        counters.reset()
        rows, bumped, _ = relay.drain("default")
        assert (rows, bumped) == (4, 4)
        assert log_rows() == []
        assert not author_slug.outcome(1).hit and not tokens.outcome().hit
