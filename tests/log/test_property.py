"""Triggered tags against ORM-captured tags, for random writes (Hypothesis).

For each example a small world is built with fixed ids (blog posts, comments, tags; groups with
a self-reference and a to_field foreign key from persons, m2m through rows, generic notes, a
UUID-keyed token, multi-table inheritance), then 1 to 3 random writes run through the ORM in one
``atomic()`` block. Collected:

(a) the tags the ORM capture bumps at commit (the ``before_bump`` hook);
(b) the log rows the triggers wrote in that transaction, decoded as a relay decodes them.

Then the world is built again, identically (sequences too), and *the same statements* Django sent
are replayed through a psycopg connection Django knows nothing about: (c) its log rows.

Asserted, per table:

* (c) equals (b), row for row: a writer outside Django is logged exactly as the ORM's write;
* where the ORM is precise (no wildcard bumped for that table), (b) equals (a);
* where it is not, (b) holds every precise tag of (a), and every tag of (b) is bumped by (a) or
  reached through the wildcard (a) bumped for its column.

So a relay that applies the triggers' row before the writer's own bump (which then skips, its
mark being recorded) never bumps less than the writer would have. And every trigger row of an
ORM write is marked by the writer's bump: draining the log afterwards bumps nothing.

Systematic differences, by design (the ORM cannot know the rows, the triggers see them):

* inserts whose primary keys are not returned (``ignore_conflicts``, m2m ``add``) and
  ``update_conflicts``: the ORM bumps the column wildcards, the triggers the values;
* an UPDATE that assigns the primary key: the ORM bumps every wildcard of the table;
* raw SQL through Django's cursor: the ORM bumps the table's wildcards;
* an UPDATE or DELETE that touches no row: the ORM bumps the table tag, the triggers log
  nothing;
* hand-named tags (``freshcache.register(Post, urls=...)`` in the blog) exist in Django only:
  freshcache logs them itself, and a writer outside Django does not bump them;
* an UPDATE that changes nothing on a table with volatile columns is not logged (the trigger
  compares the rows), while the ORM bumps what it assigned. The writes here always change
  something (titles and names come from a counter), so that case is not generated.

Writes that fail (a unique slug taken, a deferred foreign key broken at commit) roll back: then
nothing is bumped and nothing is logged.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blog.models import Author, Comment, Post, Tag
from freshcache.capture.tables import registry
from freshcache.log import decode, relay, reset, triggers
from freshcache.testing import hook
from tests.capture_app.models import Group, Membership, Note, Person, Place, Restaurant, Token

from .conftest import log_rows, outside_params

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PROFILES = {
    "ci": settings(
        max_examples=80, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck)
    ),
    "long": settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck)),
}
PROFILE = PROFILES[os.environ.get("FRESHCACHE_HYPOTHESIS_PROFILE", "ci")]

FRESHCACHE = {
    "STORE": "memory://",
    "RELAY": False,
    "VOLATILE_FIELDS": ["blog.Post.view_count", "capture_app.Group.hits"],
}

U1 = uuid.UUID("11111111-1111-4111-8111-111111111111")
U2 = uuid.UUID("22222222-2222-4222-8222-222222222222")

TABLES = [
    "blog_author", "blog_post", "blog_tag", "blog_post_tags", "blog_comment",
    "capture_app_group", "capture_app_person", "capture_app_membership", "capture_app_token",
    "capture_app_place", "capture_app_restaurant", "capture_app_note",
]  # fmt: skip

WORLD = [
    "INSERT INTO blog_author (id, name, slug, bio) VALUES "
    "(1, 'Ann', 'a1', ''), (2, 'Bob', 'a2', ''), (3, 'Cy', 'a3', '')",
    "INSERT INTO blog_post (id, author_id, title, slug, body, published_at, view_count) VALUES "
    "(1, 1, 'P1', 'p1', '', now(), 0), (2, 1, 'P2', 'p2', '', now(), 0), "
    "(3, 2, 'P3', 'p3', '', now(), 0), (4, 3, 'P4', 'p4', '', now(), 0)",
    "INSERT INTO blog_tag (id, name, slug) VALUES (1, 't1', 't1'), (2, 't2', 't2'), "
    "(3, 't3', 't3')",
    "INSERT INTO blog_post_tags (id, post_id, tag_id) VALUES (1, 1, 1), (2, 1, 2), (3, 2, 2), "
    "(4, 3, 3)",
    "INSERT INTO blog_comment (id, post_id, author_name, body, created_at, approved) VALUES "
    "(1, 1, 'x', 'c1', now(), true), (2, 1, 'x', 'c2', now(), true), "
    "(3, 2, 'y', 'c3', now(), true), (4, 2, 'y', 'c4', now(), true), "
    "(5, 3, 'z', 'c5', now(), true), (6, 4, 'z', 'c6', now(), true)",
    "INSERT INTO capture_app_group (id, name, code, parent_id, hits) VALUES "
    "(1, 'G1', 'g1', NULL, 0), (2, 'G2', 'g2', 1, 0), (3, 'G3', 'g3', 1, 0)",
    "INSERT INTO capture_app_person (id, name, group_by_code_id) VALUES "
    "(1, 'P1', 'g1'), (2, 'P2', 'g2'), (3, 'P3', NULL)",
    "INSERT INTO capture_app_membership (id, person_id, group_id, role) VALUES "
    "(1, 1, 1, 'm'), (2, 2, 1, 'm'), (3, 3, 2, 'm')",
    f"INSERT INTO capture_app_token (id, owner_id, label) VALUES ('{U1}', 1, 'k1'), "
    f"('{U2}', 2, 'k2')",
    "INSERT INTO capture_app_place (id, name, city) VALUES (1, 'Pl1', 'c'), (2, 'Pl2', 'c'), "
    "(3, 'Pl3', 'd')",
    "INSERT INTO capture_app_restaurant (place_ptr_id, serves_pizza, rating) VALUES "
    "(2, true, 1), (3, false, 2)",
]
#: The content type id of Group (notes point at groups), found once per test.
NOTE_TYPE = [0]
SEQUENCES = [t for t in TABLES if t not in ("capture_app_token", "capture_app_restaurant")]


def group_type(conn: psycopg.Connection[Any]) -> int:
    conn.execute(
        "INSERT INTO django_content_type (app_label, model) VALUES ('capture_app', 'group') "
        "ON CONFLICT DO NOTHING"
    )
    row = conn.execute(
        "SELECT id FROM django_content_type WHERE app_label = 'capture_app' AND model = 'group'"
    ).fetchone()
    assert row is not None
    return int(row[0])


def build_world(conn: psycopg.Connection[Any], ct: int) -> None:
    """The same rows, ids and sequence positions every time; then an empty log."""
    with conn.transaction():
        conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
        for sql in WORLD:
            conn.execute(sql)
        conn.execute(
            "INSERT INTO capture_app_note (id, content_type_id, object_id, text) VALUES "
            "(1, %s, 1, 'n1'), (2, %s, 2, 'n2')",
            [ct, ct],
        )
        for table in SEQUENCES:
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 100)")
        conn.execute("DELETE FROM freshcache_log")


# -- the writes --------------------------------------------------------------------------------

_counter = itertools.count()


def uniq() -> str:
    return f"v{next(_counter)}"


def _first(model: Any, pk: Any) -> Any:
    return model.objects.filter(pk=pk).first()


def _move_comment(cid: int, post: int) -> None:
    c = _first(Comment, cid)
    if c is not None:
        c.post_id, c.body = post, uniq()
        c.save()


def _bulk_move(cids: list[int], post: int) -> None:
    objs = list(Comment.objects.filter(pk__in=cids))
    for o in objs:
        o.post_id = post
    Comment.objects.bulk_update(objs, ["post"])


def _post_slug(pid: int, slug: str) -> None:
    p = _first(Post, pid)
    if p is not None:
        p.slug, p.title = slug, uniq()
        p.save()


def _m2m(pid: int, how: str, tags: list[int]) -> None:
    p = _first(Post, pid)
    if p is None:
        return
    if how == "clear":
        p.tags.clear()
    elif how == "set":
        p.tags.set(tags)
    else:
        getattr(p.tags, how)(*tags)


def _tag_posts(tid: int, posts: list[int]) -> None:
    t = _first(Tag, tid)
    if t is not None:
        t.posts.add(*posts)


def _group_parent(gid: int, parent: int | None) -> None:
    g = _first(Group, gid)
    if g is not None:
        g.parent_id, g.name = parent, uniq()
        g.save()


def _restaurant_edit(pid: int) -> None:
    r = _first(Restaurant, pid)
    if r is not None:
        r.rating, r.name = r.rating + 1, uniq()
        r.save()


def _raw_edit(post: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("UPDATE blog_comment SET body = %s WHERE post_id = %s", [uniq(), post])


POST = st.integers(1, 5)  # 5 does not exist: writes that touch nothing, or break a key
AUTHOR = st.integers(1, 4)
TAG = st.integers(1, 3)
GROUP = st.integers(1, 3)
SLUG = st.sampled_from(["p1", "p9", "q", "ünï", "x" * 70])
CODE = st.sampled_from(["g1", "g2", "g7", None])

WRITES: dict[str, tuple[Any, Callable[..., Any]]] = {
    "comment_create": (st.tuples(POST), lambda p: Comment.objects.create(
        post_id=p, author_name="w", body=uniq())),
    "comment_move": (st.tuples(st.integers(1, 7), POST), _move_comment),
    "comments_move": (st.tuples(POST, POST), lambda a, b: Comment.objects.filter(
        post_id=a).update(post_id=b)),
    "comments_edit": (st.tuples(POST), lambda p: Comment.objects.filter(post_id=p).update(
        body=uniq())),
    "comments_same": (st.tuples(POST), lambda p: Comment.objects.filter(post_id=p).update(
        post_id=F("post_id"))),
    "comments_delete": (st.tuples(POST), lambda p: Comment.objects.filter(post_id=p).delete()),
    "comments_bulk_create": (st.tuples(st.lists(POST, min_size=1, max_size=3)),
                             lambda ps: Comment.objects.bulk_create(
                                 [Comment(post_id=p, author_name="b", body=uniq()) for p in ps])),
    "comments_bulk_move": (st.tuples(st.lists(st.integers(1, 7), max_size=3), POST), _bulk_move),
    "comments_raw_sql": (st.tuples(POST), _raw_edit),
    "post_create": (st.tuples(AUTHOR, SLUG), lambda a, s: Post.objects.create(
        author_id=a, title=uniq(), slug=s, body="")),
    "post_slug": (st.tuples(POST, SLUG), _post_slug),
    "post_author": (st.tuples(POST, AUTHOR), lambda p, a: Post.objects.filter(pk=p).update(
        author_id=a, title=uniq())),
    "post_viewed": (st.tuples(POST), lambda p: Post.objects.filter(pk=p).update(
        view_count=F("view_count") + 1)),
    "post_delete": (st.tuples(POST), lambda p: Post.objects.filter(pk=p).delete()),
    "post_tags": (st.tuples(POST, st.sampled_from(["add", "remove", "set", "clear"]),
                            st.lists(TAG, max_size=3)), _m2m),
    "tag_posts": (st.tuples(TAG, st.lists(POST.filter(lambda p: p < 5), max_size=2)),
                  _tag_posts),
    "tags_ignore_conflicts": (st.tuples(st.lists(SLUG, min_size=1, max_size=2, unique=True)),
                              lambda ss: Tag.objects.bulk_create(
                                  [Tag(name=uniq(), slug=s) for s in ss], ignore_conflicts=True)),
    "tags_update_conflicts": (st.tuples(st.lists(st.sampled_from(["t1", "t2", "t9"]),
                                                 min_size=1, max_size=2, unique=True)),
                              lambda ss: Tag.objects.bulk_create(
                                  [Tag(name=uniq(), slug=s) for s in ss], update_conflicts=True,
                                  unique_fields=["slug"], update_fields=["name"])),
    "author_slug": (st.tuples(AUTHOR, st.sampled_from(["a1", "a9", "b"])),
                    lambda a, s: Author.objects.filter(pk=a).update(slug=s)),
    "author_delete": (st.tuples(AUTHOR), lambda a: Author.objects.filter(pk=a).delete()),
    "group_code": (st.tuples(GROUP, CODE.filter(bool)), lambda g, c: Group.objects.filter(
        pk=g).update(code=c, name=uniq())),
    "group_parent": (st.tuples(GROUP, st.one_of(st.none(), GROUP)), _group_parent),
    "group_hits": (st.tuples(GROUP), lambda g: Group.objects.filter(pk=g).update(
        hits=F("hits") + 1)),
    "group_delete": (st.tuples(GROUP), lambda g: Group.objects.filter(pk=g).delete()),
    "person_create": (st.tuples(CODE), lambda c: Person.objects.create(
        name=uniq(), group_by_code_id=c)),
    "person_code": (st.tuples(st.integers(1, 3), CODE), lambda p, c: Person.objects.filter(
        pk=p).update(group_by_code_id=c)),
    "membership_create": (st.tuples(st.integers(1, 3), GROUP),
                          lambda p, g: Membership.objects.create(person_id=p, group_id=g)),
    "memberships_delete": (st.tuples(st.integers(1, 3)),
                           lambda p: Membership.objects.filter(person_id=p).delete()),
    "token_create": (st.tuples(st.one_of(st.none(), st.integers(1, 3))),
                     lambda o: Token.objects.create(owner_id=o, label=uniq())),
    "tokens_move": (st.tuples(st.integers(1, 3), st.integers(1, 3)),
                    lambda a, b: Token.objects.filter(owner_id=a).update(owner_id=b)),
    "token_new_key": (st.tuples(st.sampled_from([U1, U2])),
                      lambda u: Token.objects.filter(pk=u).update(id=uuid.uuid4())),
    "tokens_delete": (st.tuples(st.integers(1, 3)),
                      lambda o: Token.objects.filter(owner_id=o).delete()),
    "restaurant_create": (st.tuples(), lambda: Restaurant.objects.create(name=uniq(), rating=1)),
    "restaurant_edit": (st.tuples(st.integers(1, 3)), _restaurant_edit),
    "restaurant_delete": (st.tuples(st.integers(1, 3)),
                          lambda p: Restaurant.objects.filter(pk=p).delete()),
    "place_city": (st.tuples(st.integers(1, 3)), lambda p: Place.objects.filter(pk=p).update(
        city=uniq())),
    "note_create": (st.tuples(GROUP), lambda g: Note.objects.create(
        content_type_id=NOTE_TYPE[0], object_id=g, text=uniq())),
    "note_move": (st.tuples(st.integers(1, 2), GROUP), lambda n, g: Note.objects.filter(
        pk=n).update(object_id=g)),
}  # fmt: skip

WRITE = st.sampled_from(sorted(WRITES)).flatmap(
    lambda name: WRITES[name][0].map(lambda args: (name, args))
)


# -- the comparison ----------------------------------------------------------------------------


def split(tag: str) -> tuple[str, str]:
    """(table label, the wildcard of the tag's column, or the tag itself for a table tag)."""
    cut = min((i for i in (tag.find(":"), tag.find("?")) if i >= 0), default=-1)
    if cut < 0:
        return tag, tag
    label = tag[:cut]
    if tag[cut] == ":":
        return label, f"{label}:*"
    column = tag[cut + 1 :].split("=", 1)[0]
    return label, f"{label}?{column}=*"


def by_table(tags: set[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for tag in tags:
        out.setdefault(split(tag)[0], set()).add(tag)
    return out


def is_wildcard(tag: str) -> bool:
    return tag.endswith(":*") or tag.endswith("=*")


def compare(orm: set[str], logged: set[str]) -> list[str]:
    """What is wrong between the ORM's tags and the triggers' (empty: nothing)."""
    problems = []
    orm_t, log_t = by_table(orm), by_table(logged)
    for label in sorted(set(orm_t) | set(log_t)):
        o, t = orm_t.get(label, set()), log_t.get(label, set())
        if o == {label} and not t:
            continue  # a statement that touched no row: the ORM bumps the table tag anyway
        if not any(is_wildcard(x) for x in o):
            if o != t:
                problems.append(f"{label}: orm-only {sorted(o - t)}, trigger-only {sorted(t - o)}")
            continue
        missing = {x for x in o if not is_wildcard(x)} - t
        if missing:
            problems.append(f"{label}: the triggers miss the ORM's {sorted(missing)}")
        uncovered = {x for x in t if x not in o and split(x)[1] not in o}
        if uncovered:
            problems.append(f"{label}: the ORM bumps nothing covering {sorted(uncovered)}")
    return problems


def summary(rows: list[dict[str, Any]]) -> list[tuple[str, str, list[str]]]:
    return [(r["tbl"], r["op"], sorted(decode(r, "default"))) for r in rows]


class Recorder:
    """The write statements Django sends (to replay them from outside Django)."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, Any, bool]] = []

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        verb = sql.lstrip().split(None, 1)[0].upper()
        if verb in ("INSERT", "UPDATE", "DELETE") and "freshcache_log" not in sql:
            self.statements.append((sql, params, many))  # the write, not freshcache's log row
        return execute(sql, params, many, context)


def replay(statements: list[tuple[str, Any, bool]]) -> None:
    with psycopg.connect(**outside_params(), cursor_factory=psycopg.ClientCursor) as conn:
        with conn.cursor() as cursor:
            for sql, params, many in statements:
                if many:
                    cursor.executemany(sql, params)
                else:
                    cursor.execute(sql, params)
        conn.commit()


# -- the test ----------------------------------------------------------------------------------


@pytest.fixture
def world(transactional_db: None) -> Iterator[tuple[psycopg.Connection[Any], int]]:
    """The settings of this test, its triggers (VOLATILE_FIELDS is part of them), and a
    connection from outside Django; the suite's triggers are put back afterwards."""
    with override_settings(FRESHCACHE=FRESHCACHE):
        triggers.install()
        reset()
        with psycopg.connect(**outside_params(), autocommit=True) as conn:
            NOTE_TYPE[0] = group_type(conn)
            yield conn, NOTE_TYPE[0]
    triggers.install()
    reset()


@PROFILE
@given(writes=st.lists(WRITE, min_size=1, max_size=3))
def _examples(world: tuple[psycopg.Connection[Any], int], writes: list[Any]) -> None:
    conn, ct = world
    build_world(conn, ct)
    orm: set[str] = set()
    recorder = Recorder()
    failed = None
    with hook("before_bump", lambda tags, **_: orm.update(tags)):
        try:
            with connection.execute_wrapper(recorder), transaction.atomic():
                for name, args in writes:
                    WRITES[name][1](*args)
        except DatabaseError as exc:  # a key taken or broken: everything rolled back
            failed = exc
    rows = log_rows()
    if failed is not None:
        assert (orm, rows) == (set(), []), f"{writes} failed ({failed}) yet left bumps or rows"
        return
    # Freshcache logs only what no trigger sees: here, the URLs the blog registers for posts
    # (``freshcache.register(Post, urls=...)``), which are Django's alone.
    hand: set[str] = set()
    for r in rows:
        if r["source"] != "trigger":
            hand |= decode(r, "default")
    assert all(t.startswith("url:") for t in hand), f"{writes}: the ORM logged {sorted(hand)}"
    triggered = [r for r in rows if r["source"] == "trigger"]
    logged: set[str] = set()
    for r in triggered:
        logged |= decode(r, "default")
    problems = compare(orm - hand, logged)
    assert not problems, f"{writes}:\n" + "\n".join(problems)
    # Every row of an ORM write is marked by the writer's bump: a relay bumps none again.
    assert relay.drain("default")[:2] == (len(rows), 0), writes

    build_world(conn, ct)
    replay(recorder.statements)
    assert summary(log_rows()) == summary(triggered), writes


def test_triggered_tags_match_orm_tags_for_random_writes(
    world: tuple[psycopg.Connection[Any], int],
) -> None:
    assert registry().tables["blog_post"].volatile == {"view_count"}
    _examples(world)
