"""Garbage in the store is a miss or a bypass: never an exception, never a stale hit (issue 9, 5).

Any key or row a store reads may hold what freshcache did not write: another application's key
under the same prefix, a hand-typed ``redis-cli SET``, a value of another Redis type, a value cut
short, a row edited by hand. The issue's case: ``SET {fc}:seq notanumber`` made every cached page
answer 500. Here:

* that exact case, through ``freshcache.core.fetch`` and through a ``cache_page`` view;
* every key of the Redis position (sequence, epoch, the sequence's copy, the server key) holding
  each kind of garbage: one warning, everything misses once, then caching resumes;
* tag versions, entries and marks holding garbage, on Redis and on the database store;
* a Hypothesis state machine per store that writes random garbage of random types into the keys
  and rows the store uses, between operations and in the middle of computations, while reads,
  writes, relay applies, marks, ``forget`` and ``clear`` run through the core and the store API.
  Every value returned must equal a model of the data, nothing may raise, no call may bypass
  for "store unavailable" (a script that fails), and once the garbage stops the cache stores
  and hits again.

What is *not* garbage here: a well-formed value freshcache itself could have written (an older
version copied back, a plausible version number in ``freshcache_tag``, a hand-made entry text
with a valid header). Such a value cannot be told from a real one; see docs/internals.md.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import Client, override_settings
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

import freshcache
from freshcache import counters, depends_on, invalidate
from freshcache.core import fetch, store_key
from freshcache.stores import Hit, Store
from freshcache.stores import reset as reset_stores
from freshcache.stores.database import SHIFT
from freshcache.testing import hook
from tests.helpers import RedisServer
from tests.http_app.views import RENDERS

PROFILE = os.environ.get("FRESHCACHE_HYPOTHESIS_PROFILE", "ci")
EXAMPLES = {"ci": 60, "long": 1000}[PROFILE]
STEPS = {"ci": 40, "long": 80}[PROFILE]

NAMES = ("a", "b", "c")
#: The cached computations of the model: key -> the names whose data it reads.
READS: dict[str, tuple[str, ...]] = {"gb:a": ("a",), "gb:b": ("b",), "gb:a+b": ("a", "b")}
#: A computation that nests another (gb:c inside gb:outer).
NESTED = "gb:outer"
CORE_KEYS = (*READS, "gb:c", NESTED)
#: An entry written through the store API directly (no core, no signature): depends on gb:a.
DIRECT = "direct-a"
CORRUPT = "held values freshcache did not write"

truth: dict[str, int] = {}


def tag(name: str) -> str:
    return f"gb:{name}"


def compute(names: tuple[str, ...]) -> Callable[[], tuple[int, ...]]:
    def run() -> tuple[int, ...]:
        depends_on(*(tag(n) for n in names))
        return tuple(truth[n] for n in names)

    return run


def compute_nested() -> tuple[Any, ...]:
    return ("outer", *fetch("gb:c", compute(("c",))).value)


def read(key: str) -> Any:
    """Read ``key`` through the core; check the value against the model."""
    if key == NESTED:
        out = fetch(NESTED, compute_nested)
        expected: tuple[Any, ...] = ("outer", truth["c"])
    else:
        names = READS.get(key, ("c",))
        out = fetch(key, compute(names))
        expected = tuple(truth[n] for n in names)
    assert out.value == expected, f"{key}: served {out.value}, the data is {expected} ({out})"
    assert out.reason != "store unavailable", f"{key}: {out}"
    return out


def write(name: str) -> None:
    truth[name] += 1
    invalidate(tag(name))


def corrupt_warnings(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if CORRUPT in r.getMessage()]


class Recorder(logging.Handler):
    """Keeps the records of freshcache's store loggers (Hypothesis runs many examples in one
    test, so caplog's per-test list is not enough)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    handler = Recorder()
    logger = logging.getLogger("freshcache.stores")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@pytest.fixture(autouse=True)
def _truth() -> None:
    truth.clear()
    truth.update(dict.fromkeys(NAMES, 1))
    RENDERS.clear()


def state(response: Any) -> str:
    return str(response["X-Freshcache"]).split(";")[0]


# -- Redis -------------------------------------------------------------------------------------

P = "{fc}"
POSITION = {"seq": f"{P}:seq", "epoch": f"{P}:epoch", "copy": f"{P}:seq:copy"}


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def on_redis(redis_server: RedisServer, transactional_db: None) -> Iterator[RedisServer]:
    """The default store on a throwaway redis-server (prefix ``fc``), empty; no relay thread."""
    redis_server.client().flushall()
    with override_settings(FRESHCACHE={"STORE": redis_server.url, "RELAY": False, "HEADER": True}):
        counters.reset()
        yield redis_server


def string_at(client: Any, key: str) -> bytes | None:
    """The string under ``key``, or None (missing, or a value of another type)."""
    return client.get(key) if client.type(key) == b"string" else None


def put(client: Any, key: str, kind: str, value: Any) -> None:
    """Write garbage ``value`` of Redis type ``kind`` under ``key`` (or cut, or delete it)."""
    if kind in ("truncate", "back"):
        found = string_at(client, key)
        if found is None:
            return
        if kind == "truncate":
            client.set(key, found[:value], keepttl=True)
        elif found.isdigit():  # an integer set back by ``value`` (a restore of that key alone)
            client.set(key, max(0, int(found) - value), keepttl=True)
        return
    client.delete(key)
    if kind == "string":
        client.set(key, value)
    elif kind == "list":
        client.rpush(key, value)
    elif kind == "hash":
        client.hset(key, value, value)
    elif kind == "set":
        client.sadd(key, value)
    elif kind == "zset":
        client.zadd(key, {value: 1})
    elif kind == "stream":
        client.xadd(key, {value: value})
    else:
        assert kind == "delete", kind


@pytest.mark.redis
def test_a_sequence_that_is_not_a_number_is_a_new_epoch_not_a_500(
    on_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """``redis-cli SET '{fc}:seq' notanumber``: the issue's exact case."""
    caplog.set_level(logging.WARNING, logger="freshcache.stores")
    web = Client(raise_request_exception=False)
    assert read("gb:a").stored is True
    assert state(web.get("/t/plain/")) == "miss"
    assert state(web.get("/t/plain/")) == "hit"

    on_redis.client().set("{fc}:seq", "notanumber")

    # A page and a function never cached (a miss: the sequence is read for the snapshot).
    assert web.get("/t/echo/?q=new").status_code == 200
    assert read("gb:b").stored is True
    # Those cached before: the new epoch makes everything miss once.
    out = read("gb:a")
    assert (out.hit, out.stored) == (False, True)
    response = web.get("/t/plain/")
    assert response.status_code == 200
    assert (state(response), response.content) == ("miss", b"plain render 2")
    assert state(web.get("/t/plain/")) == "hit"
    assert read("gb:a").hit is True
    write("a")
    assert read("gb:a").hit is False
    assert read("gb:a").hit is True
    assert corrupt_warnings(caplog.records) == [
        "freshcache store 'default': the sequence or epoch keys under {fc} held values "
        "freshcache did not write (another type, not an integer, or a sequence set back); "
        "started a new epoch: every entry misses once"
    ]
    assert on_redis.client().get("{fc}:seq") == b"1"
    assert freshcache.stats()["store_errors"] == 0


STRING_GARBAGE = [
    b"notanumber",
    b"",
    b"-3",
    b"1.5",
    b"0x10",
    b"1e3",
    b" 7",
    b"007",
    b"99999999999999999999",
    b"\xff\xfe",
]
TYPED_GARBAGE = ["list", "hash", "set", "zset", "stream"]


POSITION_CASES = [
    (which, garbage)
    for which in POSITION
    for garbage in [
        *(("string", v) for v in STRING_GARBAGE),
        *((kind, b"x") for kind in TYPED_GARBAGE),
        ("truncate", 1),
        ("set back", b"1"),
        ("set forward", b"99999"),
    ]
    # A sequence set forward is not garbage (test_a_sequence_set_forward_costs_nothing).
    if (which, garbage[0]) != ("seq", "set forward")
]


@pytest.mark.redis
@pytest.mark.parametrize(
    "which, garbage", POSITION_CASES, ids=[f"{w}-{g[0]}:{g[1]!r}" for w, g in POSITION_CASES]
)
def test_the_position_holding_garbage_starts_one_new_epoch(
    on_redis: RedisServer, recorder: Recorder, which: str, garbage: tuple[str, Any]
) -> None:
    for _ in range(12):
        write("b")  # the sequence is at 12: cut short or set back, it goes back
    assert read("gb:a").stored is True
    kind, value = garbage
    if kind in ("truncate", "string") or kind in TYPED_GARBAGE:
        put(on_redis.client(), POSITION[which], kind, value)
    else:
        put(on_redis.client(), POSITION[which], "string", value)
    if which == "copy" and kind in ("truncate", "set back"):
        # A copy lower than the sequence is harmless (it only ever bounds how far the sequence
        # may go back): taken as is, no new epoch, no warning.
        assert read("gb:a").hit is True
        assert corrupt_warnings(recorder.records) == []
        return
    out = read("gb:a")
    assert (out.hit, out.stored) == (False, True)
    assert read("gb:a").hit is True
    assert len(corrupt_warnings(recorder.records)) == 1, recorder.records
    write("a")
    assert read("gb:a").hit is False
    assert read("gb:a").hit is True
    assert len(corrupt_warnings(recorder.records)) == 1
    assert freshcache.stats()["store_errors"] == 0


@pytest.mark.redis
@pytest.mark.parametrize("which", ["seq", "epoch", "copy", "server"])
def test_a_lost_position_key_is_a_silent_new_epoch(
    on_redis: RedisServer, recorder: Recorder, which: str
) -> None:
    """Eviction or FLUSHALL, not garbage: a new epoch without a warning."""
    assert read("gb:a").stored is True
    on_redis.client().delete(POSITION.get(which, f"{P}:server"))
    freshcache.store()._client.connection_pool.disconnect()  # type: ignore[attr-defined]
    assert read("gb:a").hit is False
    assert read("gb:a").hit is True
    assert recorder.records == []


@pytest.mark.redis
def test_a_sequence_set_back_never_hands_a_version_out_twice(on_redis: RedisServer) -> None:
    """Set back, the sequence would give a tag a version an out-of-date entry recorded."""
    client = on_redis.client()
    write("a")
    assert read("gb:a").stored is True  # records gb:a's version <epoch>:1.
    assert client.get("{fc}:seq") == b"1"
    write("a")  # <epoch>:2.: the entry is out of date (and not read, so not deleted)
    client.set("{fc}:seq", 0)
    write("a")  # the next step would be 1: <epoch>:1. again, which the entry recorded
    assert read("gb:a").value == (4,)


@pytest.mark.redis
def test_a_sequence_set_forward_costs_nothing(on_redis: RedisServer, recorder: Recorder) -> None:
    """Ahead of its copy is safe (versions stay unique and in order): no epoch, no warning."""
    assert read("gb:a").stored is True
    on_redis.client().set("{fc}:seq", 5000)
    assert read("gb:a").hit is True
    write("a")
    assert read("gb:a").hit is False
    assert on_redis.client().get("{fc}:seq:copy") == b"5001"
    assert recorder.records == []


@pytest.mark.redis
@pytest.mark.parametrize(
    "garbage", [("string", b"f00d"), ("hash", b"x"), ("list", b"x")], ids=lambda g: g[0]
)
def test_a_server_key_holding_garbage_starts_a_new_epoch_on_connect(
    on_redis: RedisServer, recorder: Recorder, garbage: tuple[str, bytes]
) -> None:
    assert read("gb:a").stored is True
    put(on_redis.client(), f"{P}:server", *garbage)
    freshcache.store()._client.connection_pool.disconnect()  # type: ignore[attr-defined]
    assert read("gb:a").hit is False
    assert read("gb:a").hit is True
    if garbage[0] != "string":  # "f00d" could be a run id: a restart, not garbage
        assert [r.getMessage() for r in recorder.records] == [
            "freshcache store 'default': the server key {fc}:server held a value freshcache "
            "did not write; started a new epoch: every entry misses once"
        ]


@pytest.mark.redis
@pytest.mark.parametrize(
    "garbage",
    [("string", v) for v in STRING_GARBAGE[:4]]
    + [(kind, b"x") for kind in TYPED_GARBAGE]
    + [("truncate", n) for n in (0, 17, 18)],
    ids=lambda g: f"{g[0]}:{g[1]!r}",
)
def test_a_tag_version_holding_garbage_is_a_lost_version(
    on_redis: RedisServer, recorder: Recorder, garbage: tuple[str, Any]
) -> None:
    """(Truncated to 18 characters: the version without its final dot.)"""
    write("a")
    assert read("gb:a+b").stored is True
    put(on_redis.client(), f"{P}:t:gb:a", *garbage)
    assert read("gb:a+b").hit is False
    assert read("gb:a+b").hit is True
    write("a")
    assert read("gb:a+b").hit is False
    assert recorder.records == []


@pytest.mark.redis
def test_a_tag_version_the_server_will_not_read_is_a_miss_not_an_outage(
    on_redis: RedisServer, recorder: Recorder
) -> None:
    """An error inside the lookup's reads of tag versions (here an ACL user without ``MGET``;
    on a cluster, a key of a slot that is moving away) makes that entry miss: the script never
    fails, since a failed script is an outage (every lookup of the store a bypass, a warning)."""
    on_redis.client().acl_setuser(
        "nomget", enabled=True, nopass=True, keys=["*"], channels=["*"],
        commands=["+@all", "-mget"],
    )
    url = on_redis.url.replace("redis://", "redis://nomget:@")
    with override_settings(FRESHCACHE={"STORE": url, "RELAY": False, "HEADER": True}):
        assert read("gb:a+b").stored is True
        for _ in range(3):  # read() also asserts the store was not unavailable
            out = read("gb:a+b")
            assert (out.hit, out.stored) == (False, True)
        write("a")
        assert read("gb:a+b").hit is False
    assert recorder.records == []


@pytest.mark.redis
@pytest.mark.parametrize(
    "garbage",
    [("string", v) for v in STRING_GARBAGE[:4]]
    + [(kind, b"x") for kind in TYPED_GARBAGE]
    + [("truncate", n) for n in (5, 17, 20, 40, 60)]
    + [("copy", None)],
    ids=lambda g: f"{g[0]}:{g[1]!r}",
)
def test_an_entry_holding_garbage_is_a_miss(
    on_redis: RedisServer, garbage: tuple[str, Any]
) -> None:
    client = on_redis.client()
    assert read("gb:a").stored is True
    assert read("gb:b").stored is True
    key = f"{P}:e:{store_key('gb:a')}"
    kind, value = garbage
    if kind == "copy":  # another entry, valid in itself, under this key: its MAC names its key
        kind, value = "string", client.get(f"{P}:e:{store_key('gb:b')}")
    put(client, key, kind, value)
    assert read("gb:a").hit is False
    assert read("gb:a").hit is True
    assert freshcache.stats()["store_errors"] == 0


@pytest.mark.redis
@pytest.mark.parametrize(
    "garbage",
    [("string", b"1"), ("string", b"applied"), ("hash", b"x"), ("list", b"x")],
    ids=lambda g: f"{g[0]}:{g[1]!r}",
)
def test_a_mark_holding_garbage_never_makes_a_relay_skip_its_row(
    on_redis: RedisServer, garbage: tuple[str, bytes]
) -> None:
    store = freshcache.store()
    assert read("gb:a").stored is True
    put(on_redis.client(), f"{P}:m:77", *garbage)
    truth["a"] += 1  # a write whose only record is its log row 77
    assert store.apply([(77, [tag("a")])]) == 1
    assert read("gb:a").hit is False
    put(on_redis.client(), f"{P}:m:78", *garbage)
    truth["a"] += 1
    store.bump([tag("a")], [78])  # the writer's own bump is made, and marks row 78
    assert read("gb:a").hit is False
    assert store.apply([(78, [tag("a")])]) == 0


# -- the database store ------------------------------------------------------------------------


@pytest.fixture
def on_database(transactional_db: None) -> Iterator[None]:
    with override_settings(FRESHCACHE={"STORE": "database://", "RELAY": False, "HEADER": True}):
        freshcache.store().clear()
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM freshcache_tag")
        counters.reset()
        yield


def sql(statement: str, params: list[Any] | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])


def entry_row(key: str) -> tuple[Any, ...] | None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT payload, versions, expires FROM freshcache_entry WHERE key = %s",
            [store_key(key)],
        )
        row = cursor.fetchone()
    return None if row is None else tuple(row)


FUTURE = 1 << 55


@pytest.mark.parametrize(
    "column, value",
    [
        ("versions", ""),
        ("versions", "garbage"),
        ("versions", "gb:a"),
        ("versions", "gb:a\tnotanumber"),
        ("versions", "gb:a\t1\tx"),
        ("versions", "fc1 x\ngb:a\t1"),
        ("versions", "fc1 2\n"),
        ("versions", "\n\n"),
        ("versions", "truncate"),
        ("payload", b""),
        ("payload", b"fc1"),
        ("payload", b"\x00" * 40),
        ("expires", math.nan),
        ("expires", -math.inf),
        ("expires", -1.0),
        ("copy", None),
    ],
    ids=lambda v: repr(v)[:20],
)
def test_a_database_entry_holding_garbage_is_a_miss(
    on_database: None, column: str, value: Any
) -> None:
    write("a")
    assert read("gb:a+b").stored is True
    assert read("gb:b").stored is True
    key = store_key("gb:a+b")
    if column == "copy":
        sql(
            "UPDATE freshcache_entry SET payload = o.payload, versions = o.versions "
            "FROM freshcache_entry o WHERE freshcache_entry.key = %s AND o.key = %s",
            [key, store_key("gb:b")],
        )
    elif value == "truncate":  # every cut: the header, a tag line, a version's digits
        row = entry_row("gb:a+b")
        assert row is not None
        text = row[1]
        for cut in range(len(text)):
            sql("UPDATE freshcache_entry SET versions = %s WHERE key = %s", [text[:cut], key])
            assert read("gb:a+b").hit is False
            assert read("gb:a+b").hit is True
            row = entry_row("gb:a+b")
            assert row is not None
            text = row[1]
        return
    else:
        if column == "expires" and math.isnan(value) and connection.vendor == "sqlite":
            pytest.skip("SQLite stores NaN as NULL: no expiry, which is not garbage")
        sql(f"UPDATE freshcache_entry SET {column} = %s WHERE key = %s", [value, key])
    assert read("gb:a+b").hit is False
    assert read("gb:a+b").hit is True
    write("b")
    assert read("gb:a+b").hit is False


@pytest.mark.parametrize("version", [0, -1, -(1 << 62), FUTURE, (1 << 63) - 1])
def test_a_database_tag_version_holding_garbage_is_a_lost_version(
    on_database: None, version: int
) -> None:
    """A version of zero or below, or ahead of the sequence, was never handed out: it counts as
    lost (and is replaced), so the cache stores again at the next computation."""
    write("a")
    assert read("gb:a+b").stored is True
    sql("UPDATE freshcache_tag SET version = %s WHERE tag = %s", [version, tag("a")])
    assert read("gb:a+b").hit is False
    out = read("gb:a+b")
    if not out.hit:  # ahead of the sequence: refused once (and replaced), then stored
        assert out.stored is True
        assert read("gb:a+b").hit is True
    write("a")
    assert read("gb:a+b").hit is False
    assert read("gb:a+b").hit is True


@pytest.mark.parametrize("version", [0, -5, FUTURE, 3 << SHIFT | 7, 1])
def test_a_database_mark_holding_garbage_never_makes_a_relay_skip_its_row(
    on_database: None, version: int
) -> None:
    store = freshcache.store()
    for _ in range(3):
        write("b")
    assert read("gb:a").stored is True
    sql("INSERT INTO freshcache_tag (tag, version) VALUES ('log mark:77', %s)", [version])
    assert store.marked([77]) == frozenset()  # a relay skips no row for it
    truth["a"] += 1
    assert store.apply([(77, [tag("a")])]) == 1
    assert read("gb:a").hit is False
    assert store.marked([77]) == {77}
    assert store.apply([(77, [tag("a")])]) == 0  # now it is a mark
    sql("INSERT INTO freshcache_tag (tag, version) VALUES ('log mark:78', %s)", [version])
    truth["a"] += 1
    store.bump([tag("a")], [78])
    assert read("gb:a").hit is False
    store.forget([77, 78])


def test_a_sqlite_sequence_row_holding_garbage_restarts_above_every_version(
    on_database: None, recorder: Recorder
) -> None:
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL's sequence is native: it cannot hold garbage")
    write("a")
    assert read("gb:a").stored is True
    for value in ("notanumber", -3, None):
        if value is None:
            sql("DELETE FROM freshcache_sequence")  # manage.py flush: silent
        else:
            sql("UPDATE freshcache_sequence SET value = %s", [value])
        assert read("gb:a").hit is False  # every entry was deleted
        assert read("gb:a").hit is True
        write("a")
        assert read("gb:a").hit is False
    assert len(recorder.records) == 2


# -- the fuzz test -----------------------------------------------------------------------------

#: Garbage for Redis keys: (kind, value). Kinds: a Redis type, "truncate" (keep a prefix of a
#: string), "back" (an integer set back by a few steps), "delete" (eviction).
redis_garbage = st.one_of(
    st.tuples(st.just("string"), st.binary(max_size=24)),
    st.tuples(st.just("string"), st.integers(-(10**20), 10**20).map(lambda i: str(i).encode())),
    st.tuples(st.just("string"), st.sampled_from(STRING_GARBAGE)),
    st.tuples(st.sampled_from(TYPED_GARBAGE), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("truncate"), st.integers(0, 64)),
    st.tuples(st.just("back"), st.integers(1, 4)),
    st.tuples(st.just("delete"), st.just(b"")),
)
#: Where garbage goes (the keys whose garbage is most dangerous come twice).
REDIS_TARGETS = (
    "seq",
    "copy",
    "epoch",
    "server",
    "tag",
    "tag",
    "entry",
    "copy-entry",
    "mark",
    "mark",
    "foreign",
)
#: The sequence and its copy more often get an integer set back than any other garbage.
position_garbage = st.one_of(st.tuples(st.just("back"), st.integers(1, 3)), redis_garbage)


class GarbageMachine(RuleBasedStateMachine):
    """Reads, writes, relay applies and garbage, in any order; the model is ``truth``."""

    store: Store
    garbage_events = 0

    def __init__(self) -> None:
        super().__init__()
        self.store = freshcache.store()
        self.marks: dict[int, str] = {}  # mark -> the name its log row wrote
        self.next_mark = 1_000

    @initialize()
    def start(self) -> None:
        truth.update(dict.fromkeys(NAMES, 1))
        self.reset()

    def reset(self) -> None:
        raise NotImplementedError

    def garbage(self, data: st.DataObject) -> None:
        raise NotImplementedError

    # -- reads and writes ------------------------------------------------------------------

    @rule(key=st.sampled_from(CORE_KEYS))
    def read(self, key: str) -> None:
        read(key)

    @rule(name=st.sampled_from(NAMES), how=st.sampled_from(["invalidate", "bump", "mark", "apply"]))
    def write(self, name: str, how: str) -> None:
        """A write, then its bump: ``invalidate``, the store's bump, the writer's bump with its
        log row's mark, or only a relay's apply of the row (the writer's bump failed)."""
        truth[name] += 1
        if how == "invalidate":
            invalidate(tag(name))
        elif how == "bump":
            self.store.bump([tag(name)])
        else:
            mark = self.next_mark
            self.next_mark += 1
            self.marks[mark] = name
            if how == "mark":
                self.store.bump([tag(name)], [mark])
            else:
                assert self.store.apply([(mark, [tag(name)])]) == 1

    @rule(data=st.data())
    def relay_applies_again(self, data: st.DataObject) -> None:
        """A relay applies rows the writer's bump already marked (or not: both are fine)."""
        if not self.marks:
            return
        marks = data.draw(st.lists(st.sampled_from(sorted(self.marks)), min_size=1, max_size=3))
        rows = [(m, [tag(self.marks[m])]) for m in dict.fromkeys(marks)]
        assert 0 <= self.store.apply(rows) <= len(rows)

    @rule(data=st.data())
    def forget(self, data: st.DataObject) -> None:
        if self.marks:
            self.store.forget([data.draw(st.sampled_from(sorted(self.marks)))])

    @rule()
    def clear(self) -> None:
        self.store.clear()

    @rule(data=st.data(), point=st.sampled_from(["after_snapshot", "after_compute"]))
    def interfere(self, data: st.DataObject, point: str) -> None:
        """Garbage, or a write, or both, in the middle of a computation."""
        key = data.draw(st.sampled_from(CORE_KEYS))
        what = data.draw(st.sampled_from(["garbage", "write", "write+garbage", "garbage+write"]))
        name = data.draw(st.sampled_from(NAMES))
        done: list[bool] = []

        def act(**_: object) -> None:
            if done:
                return
            done.append(True)
            for step in what.split("+"):
                if step == "write":
                    truth[name] += 1
                    invalidate(tag(name))
                else:
                    self.garbage(data)

        with hook(point, act):
            out = read(key) if point == "after_snapshot" else self.read_computed_before(key)
        assert out.reason != "store unavailable", out

    def read_computed_before(self, key: str) -> Any:
        """A read whose computation ends before the hook runs: its value is the data as it
        was then (a hit runs no hook: then it is the data as it is)."""
        expected = ("outer", truth["c"]) if key == NESTED else None
        names = READS.get(key, ("c",))
        before = expected or tuple(truth[n] for n in names)
        out = fetch(key, compute_nested if key == NESTED else compute(names))
        assert out.value == before, f"{key}: {out.value} != {before} ({out})"
        return out

    @rule(data=st.data(), via=st.sampled_from(["lookup", "begin"]))
    def direct(self, data: st.DataObject, via: str) -> None:
        """The store API without the core: lookup or begin, read, maybe garbage or a write,
        set. A hit's payload must be the data as it is now."""
        looked = self.store.lookup(DIRECT) if via == "lookup" else self.store.begin()
        if isinstance(looked, Hit):
            assert looked.payload == self.direct_payload()
            assert looked.tags == {tag("a")}
            return
        payload = self.direct_payload()
        mid = data.draw(st.sampled_from([None, "garbage", "write"]))
        if mid == "garbage":
            self.garbage(data)
        elif mid == "write":
            truth["a"] += 1
            self.store.bump([tag("a")])
        self.store.set(DIRECT, payload, [tag("a")], looked)
        self.check_direct()

    @rule(data=st.data())
    def garbage_between(self, data: st.DataObject) -> None:
        self.garbage(data)

    def used(self) -> list[int]:
        return sorted(self.marks) or [self.next_mark]

    def direct_payload(self) -> bytes:
        return f"a={truth['a']}".encode()

    def check_direct(self) -> None:
        looked = self.store.lookup(DIRECT)
        if isinstance(looked, Hit):
            assert looked.payload == self.direct_payload()

    def teardown(self) -> None:
        """With the garbage stopped: every read is the truth, and the cache stores again."""
        self.check_direct()
        for key in CORE_KEYS:
            # A version ahead of the sequence (database) is refused once and replaced; the
            # next computation is stored, and the one after that is a hit.
            outs = [read(key) for _ in range(3)]
            assert outs[-1].hit is True, f"{key} is not cached again after the garbage: {outs}"


class RedisGarbage(GarbageMachine):
    client: Any

    def reset(self) -> None:
        # Each example starts from an empty server and a new store object (no breaker state).
        self.client.flushall()
        reset_stores()
        self.store = freshcache.store()

    def garbage(self, data: st.DataObject) -> None:
        target = data.draw(st.sampled_from(REDIS_TARGETS), label="target")
        garbage = position_garbage if target in ("seq", "copy") else redis_garbage
        kind, value = data.draw(garbage, label="garbage")
        if target in POSITION:
            key = POSITION[target]
        elif target == "server":
            key = f"{P}:server"
        elif target == "tag":
            key = f"{P}:t:" + tag(data.draw(st.sampled_from(NAMES)))
        elif target in ("entry", "copy-entry"):
            which = data.draw(st.sampled_from([*CORE_KEYS, DIRECT]))
            key = f"{P}:e:" + (DIRECT if which == DIRECT else store_key(which))
            if target == "copy-entry" and which != DIRECT:
                # Another entry, whole and valid, moved under this key (core keys only: the
                # store does not bind an entry to its key, the core's MAC does).
                source = data.draw(st.sampled_from([k for k in CORE_KEYS if k != which]))
                found = string_at(self.client, f"{P}:e:{store_key(source)}")
                if found is None:  # nothing to copy: store the source's value first
                    read(source)
                    found = string_at(self.client, f"{P}:e:{store_key(source)}") or b""
                kind, value = "string", found
        elif target == "mark":
            # Half the time the mark of the next log row: the garbage is there before the row.
            mark = data.draw(st.one_of(st.just(self.next_mark), st.sampled_from(self.used())))
            key = f"{P}:m:{mark}"
        else:
            key = f"{P}:" + data.draw(st.sampled_from(["x", "e:other", "t:other", "m:x"]))
        put(self.client, key, kind, value)
        GarbageMachine.garbage_events += 1
        if data.draw(st.booleans(), label="reconnect"):
            # New connections run the restart fence, which reads the server key.
            self.store._client.connection_pool.disconnect()  # type: ignore[attr-defined]


SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    derandomize=PROFILE == "ci",
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_fuzz_redis_garbage(on_redis: RedisServer, recorder: Recorder) -> None:
    GarbageMachine.garbage_events = 0
    RedisGarbage.client = on_redis.client()
    RedisGarbage.TestCase.settings = SETTINGS
    RedisGarbage.TestCase().runTest()
    assert GarbageMachine.garbage_events > EXAMPLES  # the garbage was written
    assert len(corrupt_warnings(recorder.records)) <= GarbageMachine.garbage_events
    assert freshcache.stats()["store_errors"] == 0
    assert freshcache.stats()["hits"] > 0


#: Garbage for ``freshcache_tag.version`` of a tag: zero or below, or far ahead of the sequence
#: (a plausible positive version written from outside cannot be told from a real one).
db_version_garbage = st.one_of(st.integers(-(2**63), 0), st.integers(1 << 50, 2**63 - 1))
#: Garbage for a mark row: that, or a first sighting's shape (a nonce): never a bump's version.
db_mark_garbage = st.one_of(
    db_version_garbage,
    st.builds(lambda k, r: k << SHIFT | r, st.integers(0, 1000), st.integers(1, (1 << SHIFT) - 1)),
)
db_text = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=40)
db_expires = st.sampled_from([math.nan, math.inf, -math.inf, -1.0, 0.0, 1e300, None])
DB_TARGETS = (
    "tag",
    "tag",
    "versions",
    "versions",
    "payload",
    "expires",
    "delete-entry",
    "copy-entry",
    "mark",
    "mark",
    "foreign-tag",
    "foreign-entry",
    "sequence",
)


class DatabaseGarbage(GarbageMachine):
    def reset(self) -> None:
        sql("DELETE FROM freshcache_entry")
        sql("DELETE FROM freshcache_tag")

    def garbage(self, data: st.DataObject) -> None:
        target = data.draw(st.sampled_from(DB_TARGETS), label="target")
        if target == "tag":
            name = tag(data.draw(st.sampled_from(NAMES)))
            if data.draw(st.booleans(), label="delete"):
                sql("DELETE FROM freshcache_tag WHERE tag = %s", [name])
            else:
                self.put_tag(name, data.draw(db_version_garbage))
        elif target == "mark":
            mark = data.draw(st.one_of(st.just(self.next_mark), st.sampled_from(self.used())))
            if data.draw(st.booleans(), label="delete"):
                sql("DELETE FROM freshcache_tag WHERE tag = %s", [f"log mark:{mark}"])
            else:
                self.put_tag(f"log mark:{mark}", data.draw(db_mark_garbage))
        elif target == "foreign-tag":
            name = data.draw(db_text.filter(lambda t: t and not t.startswith(("gb:", "log mark"))))
            self.put_tag(name, data.draw(st.integers(-(2**63), 2**63 - 1)))
        elif target == "sequence":  # SQLite's counter row (PostgreSQL's sequence is native)
            if connection.vendor == "sqlite":
                value = data.draw(st.one_of(db_text, st.integers(-(2**63), -1), st.none()))
                if value is None:
                    sql("DELETE FROM freshcache_sequence")
                else:
                    sql("UPDATE freshcache_sequence SET value = %s", [value])
        elif target == "foreign-entry":
            key = data.draw(db_text.filter(lambda t: t not in self.keys()))
            sql(
                "INSERT INTO freshcache_entry (key, payload, versions, expires) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (key) DO NOTHING",
                [key, data.draw(st.binary(max_size=40)), data.draw(db_text), None],
            )
        else:
            self.entry_garbage(target, data)
        GarbageMachine.garbage_events += 1

    def keys(self) -> list[str]:
        return [*(store_key(k) for k in CORE_KEYS), DIRECT]

    def put_tag(self, name: str, version: int) -> None:
        sql(
            "INSERT INTO freshcache_tag (tag, version) VALUES (%s, %s) "
            "ON CONFLICT (tag) DO UPDATE SET version = excluded.version",
            [name, version],
        )

    def entry_garbage(self, target: str, data: st.DataObject) -> None:
        which = data.draw(st.sampled_from([*CORE_KEYS, DIRECT]))
        key = DIRECT if which == DIRECT else store_key(which)
        if target == "delete-entry":
            sql("DELETE FROM freshcache_entry WHERE key = %s", [key])
        elif target == "copy-entry":
            if which == DIRECT:  # the store does not bind an entry to its key: the core does
                return
            source = data.draw(st.sampled_from([k for k in CORE_KEYS if k != which]))
            if entry_row(source) is None:
                read(source)
            sql(
                "INSERT INTO freshcache_entry (key, payload, versions, expires) "
                "SELECT %s, payload, versions, expires FROM freshcache_entry WHERE key = %s "
                "ON CONFLICT (key) DO UPDATE SET payload = excluded.payload, "
                "versions = excluded.versions, expires = excluded.expires",
                [key, store_key(source)],
            )
        elif target == "expires":
            sql(
                "UPDATE freshcache_entry SET expires = %s WHERE key = %s",
                [data.draw(db_expires), key],
            )
        else:
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT {target} FROM freshcache_entry WHERE key = %s", [key])
                row = cursor.fetchone()
            if row is None:
                return
            old = bytes(row[0]) if target == "payload" else row[0]
            how = data.draw(st.sampled_from(["truncate", "lines", "random"]), label="how")
            if how == "truncate":
                # (A length drawn independently of the value: versions vary in length.)
                value: Any = old[: min(data.draw(st.integers(0, 60)), max(0, len(old) - 1))]
            elif how == "lines":  # cut at a line's end: every line left still parses
                value = old[: max(0, old.rfind(b"\n" if target == "payload" else "\n"))]
            elif target == "payload":
                value = data.draw(st.binary(max_size=40))
            else:
                value = data.draw(db_text)
            sql(f"UPDATE freshcache_entry SET {target} = %s WHERE key = %s", [value, key])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_fuzz_database_garbage(on_database: None, recorder: Recorder) -> None:
    GarbageMachine.garbage_events = 0
    DatabaseGarbage.TestCase.settings = SETTINGS
    try:
        DatabaseGarbage.TestCase().runTest()
    finally:
        connection.close()
    assert GarbageMachine.garbage_events > EXAMPLES
    if connection.vendor == "postgresql":  # its sequence cannot hold garbage: nothing to warn
        assert recorder.records == []
    assert len(recorder.records) <= GarbageMachine.garbage_events
    assert freshcache.stats()["store_errors"] == 0
    assert freshcache.stats()["hits"] > 0


@pytest.mark.postgres
def test_an_interface_error_of_the_database_store_is_a_bypass(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``InterfaceError`` (a connection closed under Django) is not a ``DatabaseError``: it must
    still mean "store unavailable", never an exception in the request (review finding)."""
    from django.db import InterfaceError, connection
    from django.test import override_settings

    from freshcache.core import fetch

    with override_settings(FRESHCACHE={"STORE": "database://"}):

        def closed(*args: object, **kwargs: object) -> None:
            raise InterfaceError("connection already closed")

        with monkeypatch.context() as patched:
            patched.setattr(connection, "cursor", closed)
            out = fetch("garbage:interface", lambda: "computed")
    assert (out.value, out.hit, out.reason) == ("computed", False, "store unavailable")
