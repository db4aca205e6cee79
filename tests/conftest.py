"""Fixtures shared by the whole suite: real services, one store fixture for every store.

Tests marked ``postgres`` or ``redis`` need that service. In CI (``CI=true``) a missing service
is an error; on a developer's machine those tests are skipped and one summary line says so.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.test import override_settings

import freshcache
from freshcache import counters
from freshcache.stores import Store

IN_CI = os.environ.get("CI") == "true"
REDIS_TEST_PREFIX = f"fctest{os.getpid()}"
_skipped: dict[str, int] = {}


def redis_available() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1).ping())
    except redis.RedisError:
        return False


_SERVICES = {
    "postgres": lambda: settings.POSTGRES_AVAILABLE,
    "redis": redis_available,
}
_status: dict[str, bool] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: needs the PostgreSQL server")
    config.addinivalue_line("markers", "redis: needs the Redis server")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line(
        "markers", "relay_reports: the relay reports the rows it bumped (off elsewhere)"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    for service, probe in _SERVICES.items():
        if item.get_closest_marker(service) is None:
            continue
        if service not in _status:
            _status[service] = bool(probe())
        if not _status[service]:
            if IN_CI:
                pytest.fail(f"{service} is not reachable, and CI never skips service tests")
            _skipped[service] = _skipped.get(service, 0) + 1
            pytest.skip(f"{service} is not running here")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _skipped:
        what = ", ".join(f"{n} test(s) needing {s}" for s, n in sorted(_skipped.items()))
        terminalreporter.write_line(
            f"!!! SKIPPED {what}: start the services (see README) or run in CI !!!",
            red=True,
            bold=True,
        )


STORE_URLS = {
    "memory": "memory://",
    "database": "database://",
    "redis": None,  # filled from settings.REDIS_URL
}


#: The Redis Cluster that ``redis-cluster`` store kinds use: started at the first test that
#: asks for one, stopped when the session ends (``tests/helpers/redis_cluster.py``).
_cluster: Any = None


def shared_cluster() -> Any:
    global _cluster
    if _cluster is None:
        from tests.helpers.redis_cluster import ClusterSetup

        _cluster = ClusterSetup()
        _cluster.start()
    return _cluster


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _cluster is not None:
        _cluster.stop()


def store_url(kind: str) -> str:
    if kind == "redis-cluster":
        return shared_cluster().url(f"prefix={REDIS_TEST_PREFIX}")
    if kind == "redis-cluster-near":
        return shared_cluster().url(f"prefix={REDIS_TEST_PREFIX}&near_cache=8mb")
    if kind in ("redis", "redis-near"):
        parts = urlsplit(settings.REDIS_URL)
        # A prefix per run: concurrent runs on one machine must not clear each other's keys.
        query = f"prefix={REDIS_TEST_PREFIX}"
        if kind == "redis-near":
            query += "&near_cache=8mb"
        return parts._replace(query=query).geturl()
    return STORE_URLS[kind]


def mark_store_kind(request: pytest.FixtureRequest) -> str:
    """The store kind of a parametrized ``store_kind`` fixture, its service marks applied."""
    kind = str(request.param)
    if kind == "database":
        request.node.add_marker(pytest.mark.postgres)
    if kind.startswith("redis"):
        request.node.add_marker(pytest.mark.redis)
    pytest_runtest_setup(request.node)
    return kind


@pytest.fixture(params=["memory", "database", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return mark_store_kind(request)


@pytest.fixture
def fresh_store(store_kind: str, transactional_db: None) -> Iterator[Store]:
    """Each store in turn, configured as the default store, empty, with counters at zero.

    ``transactional_db``: a TestCase-style transaction around the test would defer every bump
    to a commit that never comes.
    """
    with override_settings(FRESHCACHE={"STORE": store_url(store_kind)}):
        store = freshcache.store()
        store.clear()
        channel = getattr(store, "channel", None)
        deadline = time.monotonic() + 5
        while channel is not None and not channel.ready():  # a near cache: in use from the start
            assert time.monotonic() < deadline, "the near cache's channel never became healthy"
            time.sleep(0.01)
        counters.reset()
        yield store
        store.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """Stop the relay before any fixture is torn down: a relay still writing to the test
    database while ``transactional_db`` flushes it (TRUNCATE) can deadlock with the flush."""
    from freshcache.log.relay import get_relay

    get_relay().stop()
    return (yield)


@pytest.fixture(autouse=True)
def _relay_reports(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The relay names the rows it bumped in the journal (``why``); off unless a test asks,
    since the TRUNCATEs of the previous test's teardown, logged by the triggers, would show
    up in this test's list of recent invalidations whenever the relay thread applies them."""
    if request.node.get_closest_marker("relay_reports") is None:
        from freshcache.log import relay

        monkeypatch.setattr(relay, "REPORT", False)


@pytest.fixture(autouse=True)
def _no_language_left_active() -> Iterator[None]:
    """A view that calls ``translation.activate()`` (or ``timezone.activate()``) leaves that
    language (time zone) active in the thread, as Django does; the next test would then render,
    key and publish in it, while ``manage.py freshcache inspect`` keys in LANGUAGE_CODE. Under
    pytest-xdist the next test can be any module's, so each test ends with the defaults."""
    yield
    from django.utils import timezone, translation

    translation.deactivate()
    timezone.deactivate()


@pytest.fixture(autouse=True)
def _stop_relay() -> Iterator[None]:
    """Each test starts with no relay thread: one left from an earlier test would apply that
    test's log to this test's stores (and hold a connection to the test database)."""
    yield
    from freshcache.log import reset
    from freshcache.log.relay import get_relay

    get_relay().stop()
    reset()


@pytest.fixture(scope="session", autouse=True)
def _end_stray_connections(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Before the test database is dropped, end connections that worker threads left open
    (servers, thread pools): otherwise DROP DATABASE fails and the database is left behind."""
    yield
    with django_db_blocker.unblock():
        from django.db import OperationalError, connection

        # A run whose tests never touched the database has none to connect to: nothing to end.
        if connection.vendor == "postgresql":
            try:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
            except OperationalError:
                pass
