"""System checks: each id, compared as a whole message (msg, hint, id), as docs/checks.md lists."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.checks import Error, Info, Warning, run_checks
from django.test import override_settings

from freshcache.checks import check_settings
from freshcache.conf import DEFAULTS
from tests.helpers import RedisServer, free_port

MEMORY_HINT = (
    "The memory store lives in one process: writes made by other processes (other workers, "
    "manage.py shell) do not invalidate it. Use database:// or redis:// in production."
)
REDIS_HINT = (
    "freshcache computes uncached while Redis is down; check the URL and that the server is "
    "running."
)


def checks(**freshcache: Any) -> list[Any]:
    with override_settings(FRESHCACHE=freshcache):
        return check_settings()


def test_registered_under_the_freshcache_tag() -> None:
    with override_settings(FRESHCACHE={"BOGUS": 1}):
        ids = [m.id for m in run_checks(tags=["freshcache"])]
    assert ids == ["freshcache.E001"]


def test_defaults_in_debug_are_clean() -> None:
    with override_settings(DEBUG=True):
        assert checks() == []


def test_e001_unknown_setting() -> None:
    assert checks(STORE="memory://", BOGUS=1, TIMEOUTS=3) == [
        Error(
            "Unknown FRESHCACHE setting(s) ['BOGUS', 'TIMEOUTS']; known settings: "
            + ", ".join(sorted(DEFAULTS)),
            hint="See docs/settings.md for every setting.",
            id="freshcache.E001",
        )
    ]


def test_e001_wrong_type() -> None:
    assert checks(SOCKET_TIMEOUT="fast") == [
        Error(
            "FRESHCACHE['SOCKET_TIMEOUT'] must be a non-negative number, not 'fast'",
            hint="See docs/settings.md for every setting.",
            id="freshcache.E001",
        )
    ]


def test_e001_not_a_dict() -> None:
    with override_settings(FRESHCACHE=["memory://"]):
        assert check_settings() == [
            Error(
                "FRESHCACHE must be a dict, not list",
                hint="See docs/settings.md for every setting.",
                id="freshcache.E001",
            )
        ]


def test_e002_unknown_scheme() -> None:
    assert checks(STORE="memcached://127.0.0.1:11211") == [
        Error(
            "Store 'default' has URL 'memcached://127.0.0.1:11211' with unknown scheme "
            "'memcached'.",
            hint="Use memory://, database://, redis:// or rediss://.",
            id="freshcache.E002",
        )
    ]


@pytest.mark.skip(
    reason="E003 needs the redis package to be missing; it is a dev dependency of this suite "
    "and hiding an installed package from the import system would test the hiding, not the check"
)
def test_e003_redis_not_installed() -> None:  # pragma: no cover
    pass


def test_e004_unknown_database_alias() -> None:
    assert checks(STORES={"default": "memory://", "db": "database://?alias=cache"}) == [
        Error(
            "Store 'db' uses database alias 'cache', which is not in DATABASES.",
            hint="Name an alias from DATABASES: database://?alias=NAME.",
            id="freshcache.E004",
        ),
        Warning(
            "Store 'default' is memory:// with DEBUG = False.",
            hint=MEMORY_HINT,
            id="freshcache.W001",
        ),
    ]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://127.0.0.1:notaport/0", "Port could not be cast to integer value as 'notaport'"),
        ("redis://127.0.0.1:6379/0?socket_timeout=fast", "could not convert string to float: "
         "'fast'"),
        ("memory://?max_entries=0", "memory store 'memory://?max_entries=0': max_entries and "
         "max_tags must be positive"),
    ],
)  # fmt: skip
def test_e005_unusable_url_is_reported_not_raised(url: str, problem: str) -> None:
    assert checks(STORE=url) == [
        Error(
            f"Store 'default' has URL {url!r}, which cannot be used: {problem}.",
            hint="Check the host, port and options; see docs/settings.md for store URLs.",
            id="freshcache.E005",
        )
    ]


def test_w001_memory_store_without_debug() -> None:
    with override_settings(DEBUG=False):
        assert checks(STORE="memory://") == [
            Warning(
                "Store 'default' is memory:// with DEBUG = False.",
                hint=MEMORY_HINT,
                id="freshcache.W001",
            )
        ]
    with override_settings(DEBUG=True):
        assert checks(STORE="memory://") == []


def test_database_store_is_clean() -> None:
    assert checks(STORE="database://") == []


@pytest.fixture
def refused_url() -> Iterator[str]:
    yield f"redis://127.0.0.1:{free_port()}/0"


def test_w002_redis_refused_is_a_warning_in_bounded_time(refused_url: str) -> None:
    started = time.monotonic()
    messages = checks(STORE=refused_url, CONNECT_TIMEOUT=0.2, SOCKET_TIMEOUT=0.2)
    assert time.monotonic() - started < 5
    assert messages == [
        Warning(
            f"Store 'default' ({refused_url}) cannot be reached now.",
            hint=REDIS_HINT,
            id="freshcache.W002",
        )
    ]


@pytest.mark.redis
def test_w002_redis_hung_is_a_warning_in_bounded_time() -> None:
    with RedisServer() as server:
        server.pause()
        try:
            started = time.monotonic()
            messages = checks(STORE=server.url, CONNECT_TIMEOUT=0.2, SOCKET_TIMEOUT=0.2)
            assert time.monotonic() - started < 5
        finally:
            server.resume()
        assert messages == [
            Warning(
                f"Store 'default' ({server.url}) cannot be reached now.",
                hint=REDIS_HINT,
                id="freshcache.W002",
            )
        ]
        assert checks(STORE=server.url) == []  # reachable again: clean


def test_unreachable_redis_never_raises_at_import_or_first_use(refused_url: str) -> None:
    """Settings naming a dead Redis: importing and calling cached code still works."""
    with override_settings(
        FRESHCACHE={"STORE": refused_url, "CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2}
    ):
        import freshcache
        from freshcache import counters

        counters.reset()

        @freshcache.cached
        def answer() -> int:
            return 42

        assert answer() == 42
        assert freshcache.stats()["store_errors"] >= 1


# -- the invalidation log: freshcache.W003, W004, I001 -----------------------------------------

TRIGGERS_HINT = (
    "Writes made outside Django to these tables (psql, other services, cascades and triggers in "
    "SQL) may not be invalidated. Run `manage.py freshcache changefeed install`."
)
LOG_TABLE_HINT = (
    "Its migration is recorded as applied: the table was dropped, the migration faked, or "
    "freshcache's models are routed away from LOG_DATABASE. Until it exists, an invalidation "
    "that cannot reach a store may be lost, and writes made outside Django are not seen. To "
    "create it: `manage.py migrate freshcache 0001 --fake`, then `manage.py migrate freshcache`."
)
NO_TRIGGERS_HINT = (
    "freshcache logs the writes made through Django only. After another program writes (a "
    "database shell, a script, another service), invalidate what it changed with "
    "freshcache.invalidate() from Django. Log triggers need PostgreSQL: see "
    "docs/outside-writes.md."
)


def sql(statement: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement)


@pytest.fixture
def put_triggers_back(transactional_db: None) -> Iterator[None]:
    yield
    from freshcache.log import reset, triggers

    triggers.install()
    reset()


@pytest.mark.postgres
def test_log_checks_are_clean_once_migrated(transactional_db: None) -> None:
    """``migrate`` created the log table and installed the triggers of the test database."""
    assert checks(STORE="database://") == []


@pytest.mark.postgres
def test_w003_missing_and_outdated_triggers_are_named(put_triggers_back: None) -> None:
    sql("DROP TRIGGER freshcache_log_ins ON blog_tag")
    expected = [
        Warning(
            "Log triggers are missing or outdated on 2 tracked table(s) of database 'default': "
            "blog_comment (outdated), blog_tag (missing).",
            hint=TRIGGERS_HINT,
            id="freshcache.W003",
        )
    ]
    # blog_comment's trigger records (id, post_id); these settings key author_name too.
    settings = {"STORE": "database://", "PREDICATE_FIELDS": ["blog.Comment.author_name"]}
    assert checks(**settings) == expected
    with override_settings(FRESHCACHE=settings):
        assert check_settings(databases=["default"]) == expected
        assert check_settings(databases=[]) == []  # the database was not offered
        assert [m.id for m in run_checks(tags=["freshcache"])] == ["freshcache.W003"]


@pytest.mark.postgres
def test_w004_log_table_missing(transactional_db: None) -> None:
    sql("ALTER TABLE freshcache_log RENAME TO freshcache_log_away")
    try:
        assert checks(STORE="database://") == [
            Warning(
                "The invalidation log table freshcache_log does not exist in database "
                "'default'.",
                hint=LOG_TABLE_HINT,
                id="freshcache.W004",
            )
        ]
    finally:
        sql("ALTER TABLE freshcache_log_away RENAME TO freshcache_log")


@pytest.mark.postgres
def test_nothing_is_reported_before_the_log_is_migrated(put_triggers_back: None) -> None:
    """``migrate`` runs the checks before it migrates: no warning about what it will create."""
    sql("ALTER TABLE freshcache_log RENAME TO freshcache_log_away")
    sql("DELETE FROM django_migrations WHERE app = 'freshcache' AND name = '0002_log'")
    from freshcache.log import triggers

    triggers.uninstall()
    try:
        assert checks(STORE="database://") == []
    finally:
        sql("ALTER TABLE freshcache_log_away RENAME TO freshcache_log")
        sql(
            "INSERT INTO django_migrations (app, name, applied) "
            "VALUES ('freshcache', '0002_log', now())"
        )


@pytest.fixture
def sqlite_alias(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A SQLite database beside the suite's PostgreSQL one (nothing connects to it)."""
    from django.conf import settings
    from django.db import connections

    monkeypatch.setitem(
        settings.DATABASES, "lite", {**settings.DATABASES["default"],
                                     "ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    )  # fmt: skip
    yield "lite"
    with contextlib.suppress(AttributeError):
        del connections["lite"]


def test_i001_log_without_triggers(sqlite_alias: str) -> None:
    assert checks(STORE="database://", LOG_DATABASE=sqlite_alias) == [
        Info(
            "The invalidation log is in database 'lite' (sqlite), which has no log triggers: "
            "writes made outside Django are not seen.",
            hint=NO_TRIGGERS_HINT,
            id="freshcache.I001",
        )
    ]
    with override_settings(DEBUG=True):  # one process: W001's business, not this
        assert checks(STORE="memory://", LOG_DATABASE=sqlite_alias) == []
    assert checks(STORE="database://", LOG_DATABASE=None) == []  # no log


@pytest.fixture
def hung_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A database alias whose server accepts connections and never answers."""
    import socket

    from django.conf import settings

    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    monkeypatch.setitem(
        settings.DATABASES, "hung", {**settings.DATABASES["default"], "HOST": "127.0.0.1",
                                     "PORT": str(port), "NAME": "hung"}
    )  # fmt: skip
    yield "hung"
    server.close()  # the check's thread, still connecting, gives up now


@pytest.mark.postgres
def test_log_checks_skip_a_hung_database_in_bounded_time(
    hung_database: str, django_db_blocker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from freshcache import checks as module

    monkeypatch.setattr(module, "DATABASE_CHECK_SECONDS", 0.5)
    with django_db_blocker.unblock():
        started = time.monotonic()
        messages = checks(STORE="database://", LOG_DATABASE=hung_database)
        elapsed = time.monotonic() - started
    assert messages == []
    assert 0.5 <= elapsed < 2


@pytest.mark.postgres
def test_log_checks_skip_a_refused_database_quickly(
    django_db_blocker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.conf import settings

    monkeypatch.setitem(
        settings.DATABASES, "refused", {**settings.DATABASES["default"], "HOST": "127.0.0.1",
                                        "PORT": str(free_port()), "NAME": "refused"}
    )  # fmt: skip
    with django_db_blocker.unblock():
        started = time.monotonic()
        assert checks(STORE="database://", LOG_DATABASE="refused") == []
        assert time.monotonic() - started < 2
