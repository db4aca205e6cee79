"""Break-it review of the Redis Sentinel store (``redis+sentinel://``): each test fails on the
code it was written against and states the expected behaviour in its docstring.

Servers: ``tests/helpers/redis_sentinel.py`` (a primary, a replica and three sentinels on
loopback), or nothing at all (free loopback ports, where nothing listens, for sentinels that
cannot be reached).
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from freshcache.checks.stores import check_store
from freshcache.stores import from_url, redacted
from freshcache.stores.redis import RedisStore
from tests.helpers.redis_sentinel import SERVICE, SentinelSetup
from tests.helpers.redis_server import free_port
from tests.test_sentinel import BREAKER, TIMEOUT, read, setup, truth, write

__all__ = ["setup"]  # the fixture, from tests/test_sentinel.py


def configured(url: str) -> Any:
    return override_settings(
        FRESHCACHE={
            "STORE": url,
            "SOCKET_TIMEOUT": TIMEOUT,
            "CONNECT_TIMEOUT": TIMEOUT,
            "BREAKER_SECONDS": BREAKER,
        }
    )


def other_process(setup: SentinelSetup) -> RedisStore:
    """Another process's store: it connects after the failover, so to the promoted master."""
    return RedisStore("other", setup.url(), socket_timeout=TIMEOUT, connect_timeout=TIMEOUT)


def wait_promoted(setup: SentinelSetup, timeout: float = 30.0) -> None:
    """Until every sentinel names the replica and the replica answers as a master."""
    deadline = time.monotonic() + timeout
    while True:
        named = [setup.master_port(index) for index in range(3)]
        try:
            role = setup.replica.client().info("replication").get("role")
        except Exception:
            role = None
        if all(port == setup.replica.port for port in named) and role == "master":
            return
        assert time.monotonic() < deadline, f"no failover: sentinels name {named}, role {role}"
        time.sleep(0.05)


# -- stale: a process still connected to the old master ---------------------------------------


@pytest.mark.redis
@pytest.mark.parametrize("query", ["", "near_cache=1mb&near_heartbeat=0.02"])
def test_a_manual_failover_serves_nothing_older_than_a_write_on_the_promoted_master(
    setup: SentinelSetup, query: str
) -> None:
    """``SENTINEL FAILOVER`` (routine maintenance: the old master stays up and reachable).

    Expected: once a write has returned in another process (its bump applied on the promoted
    master), a read in this process serves the new value, with or without a near cache.

    Found: this process's pooled connection still goes to the old master, which Sentinel
    reconfigures as a replica only about 8-10 s later (it waits ``4 * PUBLISH_PERIOD`` before
    demoting a master that reports itself as one). Until then every read here is a hit of the
    entry the write invalidated: the fence runs on *new* connections only, and redis-py asks
    the sentinels for the master only when it opens one. ``min-replicas-to-write`` (the
    documented mitigation) refuses writes there but not these read-only lookups.
    """
    with configured(setup.url(query=query)):
        truth["s"] = 1
        assert read("s") == 1
        assert read.outcome("s").hit is True
        setup.primary.client().config_set("min-replicas-to-write", 1)  # docs/scaling.md's advice
        setup.primary.client().config_set("min-replicas-max-lag", 10)
        setup.sync()
        setup.sentinel(0).execute_command("SENTINEL", "FAILOVER", SERVICE)
        wait_promoted(setup)

        writer = other_process(setup)
        try:
            truth["s"] = 2
            writer.bump(["sentinel:s"])  # the other process's write has returned
        finally:
            writer.close()
        assert setup.primary.client().info("replication")["role"] == "master"  # not demoted yet
        seen = [read("s") for _ in range(3)]
        assert seen == [2, 2, 2], f"stale reads from the old master after a write returned: {seen}"


@pytest.mark.redis
def test_a_paused_master_that_comes_back_serves_nothing_older_than_the_promoted_one(
    setup: SentinelSetup,
) -> None:
    """The master hangs (GC pause, SIGSTOP, a stalled VM), the sentinels promote the replica,
    a write returns on the promoted master, then the old master wakes up.

    Expected: a read that starts after the write serves the new value.

    Found: this process's idle pooled connection to the old master was never used during the
    hang, so it is still open; the woken master answers as a master (Sentinel demotes it only
    seconds later) and the lookup on it validates the entry the write invalidated.
    """
    with configured(setup.url()):
        truth["p"] = 1
        assert read("p") == 1
        assert read.outcome("p").hit is True
        setup.sync()
        setup.primary.pause()
        wait_promoted(setup)
        writer = other_process(setup)
        try:
            truth["p"] = 2
            writer.bump(["sentinel:p"])
        finally:
            writer.close()
        setup.primary.resume()
        seen = [read("p") for _ in range(3)]
        assert seen == [2, 2, 2], f"stale reads from the woken old master: {seen}"


# -- bounded waits ------------------------------------------------------------------------------


class _Hung:
    """A TCP port that accepts connections and never answers (a sentinel hung or blackholed)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


@pytest.mark.redis
def test_unreachable_sentinels_cost_a_bounded_wait() -> None:
    """Every sentinel unreachable (one hung, two refusing connections).

    Expected: a read is served uncached and a write returns within the bounded waits the
    settings promise (about ``CONNECT_TIMEOUT + SOCKET_TIMEOUT`` per sentinel: here well under
    2 s).

    Found: the sentinels' own connections use redis-py's default retry policy (10 retries with
    exponential backoff; only the socket timeouts are passed in ``sentinel_kwargs``), so one
    read took ~13 s and one write ~10-18 s, and once the breaker reopens every request waits
    that long again.
    """
    hung = _Hung()
    url = f"redis+sentinel://127.0.0.1:{hung.port},127.0.0.1:{free_port()},127.0.0.1:{free_port()}/svc/0"
    truth["u"] = 1
    try:
        with configured(url):
            started = time.monotonic()
            out = read.outcome("u")
            read_took = time.monotonic() - started
            assert (out.value, out.hit, out.stored) == (1, False, False)
            started = time.monotonic()
            write("u")
            write_took = time.monotonic() - started
            assert read_took < 2.0 and write_took < 2.0, (read_took, write_took)
    finally:
        hung.close()
        truth.clear()


@pytest.mark.redis
def test_hung_sentinels_are_asked_once_per_check_not_once_per_request() -> None:
    """Until the sentinels first answer, each request used to ask them again: every read paid
    every sentinel's timeout. Now a request asks at most once per ``sentinel_check``."""
    hung = [_Hung(), _Hung()]
    hosts = ",".join(f"127.0.0.1:{h.port}" for h in hung)
    truth["q"] = 1
    try:
        with configured(f"redis+sentinel://{hosts}/svc/0?sentinel_check=30"):
            started = time.monotonic()
            for _ in range(20):
                assert read.outcome("q").value == 1
            took = time.monotonic() - started
        # One question (two sentinels, TIMEOUT each) instead of twenty: 8 s before the fix.
        assert took < 4 * TIMEOUT + 1.0, took
    finally:
        for h in hung:
            h.close()
        truth.clear()


@pytest.mark.redis
def test_one_hung_sentinel_does_not_hold_requests_while_the_master_is_fine(
    setup: SentinelSetup,
) -> None:
    """The first sentinel of the URL hangs; the two others and the master are fine.

    Expected: the first read in a process (a new connection asks the sentinels) waits at most
    one sentinel's timeouts, then is served and stored.

    Found: ~6.7 s for that read (redis-py's default retries on the hung sentinel).
    """
    import os
    import signal

    os.kill(setup.sentinels[0].pid, signal.SIGSTOP)
    try:
        with configured(setup.url()):
            truth["h"] = 1
            started = time.monotonic()
            out = read.outcome("h")
            took = time.monotonic() - started
            assert out.value == 1 and out.stored is True
            assert took < 1.0, f"the first read waited {took:.1f}s on one hung sentinel"
    finally:
        os.kill(setup.sentinels[0].pid, signal.SIGCONT)


@pytest.mark.redis
def test_the_outage_warning_names_the_sentinels_not_redis_py_reprs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Expected: the one warning of an outage is a readable line (the service, the sentinels'
    addresses, what failed). Found: about 1 KB of redis-py connection-pool repr per sentinel
    (``<redis.client.Redis(<redis.connection.ConnectionPool(<redis.connection.Connection(db=0,
    username=<REDACTED>, ... maint_notifications_config=...``), in the store's warning and the
    journal's."""
    url = f"redis+sentinel://127.0.0.1:{free_port()},127.0.0.1:{free_port()}/svc/0"
    truth["w"] = 1
    try:
        with configured(url), caplog.at_level(logging.WARNING):
            read("w")
        longest = max((len(r.getMessage()) for r in caplog.records), default=0)
        assert longest < 600, max(caplog.records, key=lambda r: len(r.getMessage())).getMessage()
    finally:
        truth.clear()


# -- the URL ------------------------------------------------------------------------------------


def test_the_sentinel_password_is_not_shown() -> None:
    """docs/scaling.md tells users to put the sentinels' password in the query
    (``sentinel_password=…``). Expected: it is hidden like the servers' password wherever the
    URL is shown (``redacted()``: check messages, warnings, ``doctor``, ``repr(store)``, the
    ``StoreUnavailable`` messages). Found: shown in clear."""
    url = "redis+sentinel://:serverpw@10.0.0.1:26379/mymaster/0?sentinel_password=s3cretS"
    assert "serverpw" not in redacted(url)
    assert "s3cretS" not in redacted(url)
    store = from_url("s", url)
    try:
        assert "s3cretS" not in repr(store)
    finally:
        store.close()
    bad = url + "&prefx=site"  # any check message repeats the URL
    assert all("s3cretS" not in str(m.msg) for m in check_store("s", bad, warn=False))


def test_passwords_with_reserved_characters_reach_the_servers_and_sentinels() -> None:
    """A password quoted in the query as URLs require (``%26`` for ``&``, ``%2B`` for ``+``,
    ``%3D`` for ``=``). Expected: the sentinels get ``sentinel_password`` and the servers
    ``password`` exactly as written, or ``from_url`` / ``manage.py check`` refuse the URL.

    Found: ``RedisStore`` unquotes the query and joins it again unquoted, so ``a%26b%2Bc%3Dd``
    reaches the sentinels as ``a`` (the rest becomes an option ``b`` of value ``c d``, passed to
    every server connection: a ``TypeError`` and a logged traceback on every request), and the
    check reports nothing.
    """
    url = "redis+sentinel://10.0.0.1:26379/mymaster/0?sentinel_password=a%26b%2Bc%3Dd"
    store = from_url("s", url)
    try:
        manager, _, kwargs = store._client._freshcache_sentinel
        assert manager.sentinel_kwargs.get("password") == "a&b+c=d"
        assert "b" not in kwargs
    finally:
        store.close()
    url = "redis+sentinel://10.0.0.1:26379/mymaster/0?password=p%26q%3Dr"
    store = from_url("s", url)
    try:
        kwargs = store._client.connection_pool.connection_kwargs
        assert kwargs.get("password") == "p&q=r" and "q" not in kwargs
    finally:
        store.close()


def test_an_ipv6_sentinel_without_a_port_uses_the_default_port() -> None:
    """Expected: ``[::1]`` means ``[::1]:26379``, as ``host`` means ``host:26379``.
    Found: refused with ``sentinel port must be a number from 1 to 65535, not '1]'``."""
    store = from_url("s", "redis+sentinel://[::1],[fe80::2]:26380/mymaster/0")
    try:
        manager = store._client._freshcache_sentinel[0]
        kwargs = [s.connection_pool.connection_kwargs for s in manager.sentinels]
        found = [(k["host"], k["port"]) for k in kwargs]
        assert found == [("::1", 26379), ("fe80::2", 26380)]
    finally:
        store.close()


def test_an_empty_service_name_is_refused() -> None:
    """Expected: ``/SERVICE/DB`` with an empty service (``redis+sentinel://h:26379//0``) is an
    error naming the missing service. Found: accepted, with ``0`` taken as the service name and
    the database defaulting to 0 (then every call is a bypass: no such master)."""
    with pytest.raises((ValueError, ImproperlyConfigured)):
        from_url("s", "redis+sentinel://10.0.0.1:26379//0").close()

