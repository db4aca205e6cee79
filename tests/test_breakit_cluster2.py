"""Break-it review 2 of Redis Cluster (near cache on a cluster, declared keys, quorum guard).

Each test states the promise it checks in its docstring; a failing test is a finding. Servers:
a real cluster of 3 masters and 3 replicas on loopback (``tests/helpers/redis_cluster.py``),
one per test. Two store objects built from one URL stand for two processes.
"""

from __future__ import annotations

import contextlib
import time

import pytest
from django.test import override_settings

from freshcache.stores import from_url
from freshcache.stores.base import Store, StoreUnavailable
from freshcache.stores.near import NearStore
from freshcache.stores.redis_shards import ShardedRedisStore
from tests.helpers.redis_cluster import NODE_TIMEOUT_MS, ClusterSetup
from tests.test_breakit_cluster import _migrate, _node_id
from tests.test_cluster import cluster
from tests.test_cluster_near import fill as near_fill
from tests.test_cluster_near import read as near_read
from tests.test_cluster_near import until_ready

__all__ = ["cluster"]

pytestmark = pytest.mark.redis

TAG = "b2:t"
OPTIONS = (
    "prefix=b2&socket_timeout=0.5&connect_timeout=0.5&near_cache=1mb"
    f"&node_timeout={NODE_TIMEOUT_MS / 1000}"
)


def near(cluster: ClusterSetup, name: str, options: str = OPTIONS) -> NearStore:
    store = from_url(name, cluster.url(options))
    assert isinstance(store, NearStore)
    return store


def sharded(store: NearStore) -> ShardedRedisStore:
    assert isinstance(store.inner, ShardedRedisStore)
    return store.inner


def read(store: Store, key: str, truth: dict[str, int]) -> int:
    return near_read(store, key, truth, TAG)


def fill(store: NearStore, keys: list[str], truth: dict[str, int]) -> None:
    near_fill(store, truth, keys, TAG)


# -- resharding under a near cache -----------------------------------------------------------


def test_a_bump_during_a_resharding_reaches_near_caches(cluster: ClusterSetup) -> None:
    """A slot holding a shard is being moved (``SETSLOT IMPORTING``/``MIGRATING``, ``MIGRATE``
    in batches). Once the shard's position and tag keys have moved, a bump is sent by ``ASK``
    to the importing node and runs there. Its ``SPUBLISH`` then reaches the importing node's
    subscribers only, while near caches stay subscribed on the migrating node, which still
    owns the slot (and echoes their heartbeats: Redis serves sharded pub/sub on the source
    until ``SETSLOT NODE``). Promise: once the bump returned, the reader serves nothing older
    from its near cache. (Holds: the five other shards' messages name the same tag, and the
    near cache is one for all shards.)"""
    reader, writer = near(cluster, "reader"), near(cluster, "writer")
    try:
        index = 1
        shard = sharded(reader).shards[index]
        keys = [f"k{n}" for n in range(400) if sharded(reader).shard_of(f"k{n}") == index][:4]
        truth = dict.fromkeys(keys, 0)
        writer.bump([TAG])  # the first bumps wait out the hold of a new store
        fill(reader, keys, truth)
        slot = cluster.key_slot(shard._base)
        source = cluster.owner(slot)
        target = next(port for port in cluster.masters_now() if port != source)
        cluster.node(target).execute_command(
            "CLUSTER", "SETSLOT", slot, "IMPORTING", _node_id(cluster, source)
        )
        cluster.node(source).execute_command(
            "CLUSTER", "SETSLOT", slot, "MIGRATING", _node_id(cluster, target)
        )
        # One batch as redis-cli may take it: the position keys and the tag's version.
        _migrate(cluster, source, target, [*shard._position_keys(), shard._tag_prefix + TAG])
        for key in keys:
            truth[key] = 1
        returned = False
        deadline = time.monotonic() + 10
        while not returned and time.monotonic() < deadline:
            try:
                writer.bump([TAG])
                returned = True
            except StoreUnavailable:
                time.sleep(0.1)
        assert returned, "the bump never returned during the move"
        # The bump returned: no read that starts now may return 0.
        stale = []
        for _ in range(3):
            for key in keys:
                with contextlib.suppress(StoreUnavailable):  # a bypass is fine
                    if read(reader, key, truth) != 1:
                        stale.append(key)
            time.sleep(0.3)
        assert not stale, stale
    finally:
        reader.close()
        writer.close()


# -- where the subscriptions listen after a failover ------------------------------------------


def listening(cluster: ClusterSetup, store: NearStore) -> list[tuple[int, int | None, int]]:
    """(shard, port of the node its channel is subscribed on, port of the shard's master)."""
    out = []
    for index, channel in enumerate(store.channel.channels):
        subscriber = channel._subscriber
        port = subscriber.connection_pool.connection_kwargs.get("port") if subscriber else None
        slot = cluster.key_slot(sharded(store).shards[index]._base)
        out.append((index, port, cluster.owner(slot)))
    return out


def test_after_a_manual_failover_every_channel_listens_on_the_master(cluster: ClusterSetup) -> None:
    """docs/scaling.md: "After a failover the process subscribes again on the promoted
    master". A replica serves ``SSUBSCRIBE`` and ``SPUBLISH`` for its master's slots itself
    (Redis 7), so a channel subscribed on the demoted master (now a replica) echoes its
    heartbeats and looks healthy, while bumps reach it only through the cluster bus, after
    the writer's reply. Every channel must listen on its shard's master."""
    reader, writer = near(cluster, "reader"), near(cluster, "writer")
    try:
        keys = [f"k{n}" for n in range(24)]
        truth = dict.fromkeys(keys, 0)
        writer.bump([TAG])
        fill(reader, keys, truth)
        slot = cluster.key_slot(sharded(reader).shards[0]._base)
        cluster.manual_fail_over(slot)
        time.sleep(2)
        until_ready(reader)
        where = listening(cluster, reader)
        assert all(port == owner for _, port, owner in where), where
    finally:
        reader.close()
        writer.close()


def rolling_failover(
    cluster: ClusterSetup, reader: NearStore, writer: NearStore, keys: list[str]
) -> list[int]:
    """``CLUSTER FAILOVER`` of every master in turn (a rolling upgrade); then the reader's
    near cache is filled with value 1. Returns the demoted masters' ports. (Today every
    channel of the reader is then subscribed on one of them, now replicas.)"""
    old_masters = list(cluster.masters)
    for master in old_masters:
        index = next(
            i for i in range(len(sharded(reader).shards))
            if cluster.owner(cluster.key_slot(sharded(reader).shards[i]._base)) == master
        )  # fmt: skip
        cluster.manual_fail_over(cluster.key_slot(sharded(reader).shards[index]._base))
        time.sleep(1)
    writer.bump([TAG])  # waits out the new masters' holds
    fill(reader, keys, dict.fromkeys(keys, 1))
    print("channels (shard, subscribed on, master):", listening(cluster, reader))
    return old_masters


def test_after_a_rolling_failover_a_stalled_replica_serves_a_near_cache_stale(
    cluster: ClusterSetup,
) -> None:
    """A rolling upgrade: ``CLUSTER FAILOVER`` on each master's replica in turn, as Redis
    recommends. Each process's channels resubscribe after the ``sunsubscribe``, on the node its
    slot map still names: the demoted master, now a replica, which serves ``SSUBSCRIBE`` and
    echoes the heartbeats itself. Bumps then reach those near caches only through the cluster
    bus, after the writer's reply: a replica that stalls for a moment (SIGSTOP here, 0.3 s: a
    fork, a slow disk, a stalled VM) holds them while the near cache still counts as healthy
    (its last echo is less than three heartbeats old). Promise: once the bump returned, no
    read returns the older value."""
    reader, writer = near(cluster, "reader"), near(cluster, "writer")
    try:
        keys = [f"k{n}" for n in range(24)]
        truth = dict.fromkeys(keys, 0)
        writer.bump([TAG])
        fill(reader, keys, truth)
        old_masters = rolling_failover(cluster, reader, writer, keys)
        time.sleep(0.1)
        for port in old_masters:
            cluster.pause(port)
        try:
            truth = dict.fromkeys(keys, 2)
            writer.bump([TAG])  # returns: the new masters answer
            stale = []
            for key in keys:
                with contextlib.suppress(StoreUnavailable):
                    if read(reader, key, truth) != 2:
                        stale.append(key)
        finally:
            for port in old_masters:
                cluster.resume(port)
        assert not stale, stale
    finally:
        reader.close()
        writer.close()


# -- an ACL user -------------------------------------------------------------------------------


def _acl_user(cluster: ClusterSetup, *rules: str) -> None:
    for port in cluster.ports:
        cluster.node(port).execute_command("ACL", "SETUSER", "fc", "on", ">pw", *rules)


@pytest.mark.parametrize(
    "rules, missing",
    [
        (("~*", "&*", "+@all", "-cluster|nodes"), "'cluster|nodes'"),
        (("~*", "resetchannels", "+@all"), "channel"),  # Redis 7's default for a new user
        # redis-py's cluster client cannot start without these: it took the node for one
        # outside cluster mode, and the check said "cannot be reached" (W002).
        (("~*", "&*", "+@all", "-cluster|slots"), "'cluster|slots'"),
        (("~*", "&*", "+@all", "-command"), "'command'"),
    ],
)
def test_an_acl_user_without_a_needed_permission_is_told(
    cluster: ClusterSetup, rules: tuple[str, ...], missing: str
) -> None:
    """An ACL user that lacks what the scripts need (``cluster|nodes`` for the quorum guard;
    channels, which Redis 7 gives a new user none of, for ``SPUBLISH``): at run time every
    script (first case) or every bump (second) fails, logged as "store ... is unreachable" with
    Redis's message, which does not name the command. ``manage.py check`` names it (W011); it
    said nothing before ``stores/redis_acl.py``."""
    from freshcache.checks.stores import check_store

    _acl_user(cluster, *rules)
    url = cluster.url(OPTIONS).replace("redis+cluster://", "redis+cluster://fc:pw@")
    with override_settings(FRESHCACHE={"STORE": url}):
        messages = check_store("default", url, warn=True)
    assert [m.id for m in messages] == ["freshcache.W011"], [m.msg for m in messages]
    assert missing in messages[0].msg
    # Granted everything, the same user is clean.
    _acl_user(cluster, "reset", "on", ">pw", "~*", "&*", "+@all")
    with override_settings(FRESHCACHE={"STORE": url}):
        assert check_store("default", url, warn=True) == []


# -- threads and connections ---------------------------------------------------------------------


def test_manage_py_check_and_closed_stores_leave_no_threads(cluster: ClusterSetup) -> None:
    """``manage.py check`` builds the store to inspect it, and a closed store stops its six
    channel threads: neither leaves a ``freshcache-near`` thread running."""
    import threading

    from freshcache.checks.stores import check_store

    def near_threads() -> int:
        return sum(t.name.startswith("freshcache-near") for t in threading.enumerate())

    before = near_threads()
    url = cluster.url(OPTIONS)
    for _ in range(3):
        check_store("default", url, warn=True)
    for _ in range(3):
        store = near(cluster, "s")
        until_ready(store)
        store.close()
    deadline = time.monotonic() + 5
    while near_threads() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert near_threads() == before


def test_after_a_rolling_failover_a_read_right_after_a_bump_is_fresh(cluster: ClusterSetup) -> None:
    """The same rolling failover, no stall at all: the writer bumps and, as soon as the bump
    returns, the reader reads (another process told at once). The bump reaches the reader's
    channels (on replicas) through the cluster bus, after the reply: any read that beats it
    is stale."""
    reader, writer = near(cluster, "reader"), near(cluster, "writer")
    try:
        keys = [f"k{n}" for n in range(24)]
        writer.bump([TAG])
        fill(reader, keys, dict.fromkeys(keys, 0))
        rolling_failover(cluster, reader, writer, keys)
        stale = []
        key = keys[0]
        truth = dict.fromkeys(keys, 1)
        for step in range(2, 200):
            for _ in range(50):  # the near cache holds the key, at step - 1
                with contextlib.suppress(StoreUnavailable):
                    value = read(reader, key, truth)
                    if value != step - 1:
                        stale.append((step - 1, value))
                if reader.peek(key) is not None:
                    break
                time.sleep(0.01)
            truth = dict.fromkeys(keys, step)
            writer.bump([TAG])
            with contextlib.suppress(StoreUnavailable):
                value = read(reader, key, truth)  # right after the bump returned
                if value != step:
                    stale.append((step, value))
        assert not stale, (len(stale), stale[:5])
    finally:
        reader.close()
        writer.close()




# -- the quorum guard on a healthy cluster ------------------------------------------------------


def test_a_healthy_cluster_is_never_refused_by_the_quorum_guard(
    cluster: ClusterSetup, caplog: pytest.LogCaptureFixture
) -> None:
    """``node_timeout`` set to the cluster's (0.5 s): on a healthy cluster no script is
    refused with ``FCQUORUM`` (a healthy master's PONGs are at most about half the node timeout
    plus a cron tick old). Counted over 8 s of lookups and bumps on every shard."""
    store = from_url(
        "plain",
        cluster.url(
            "prefix=q&socket_timeout=0.5&connect_timeout=0.5&breaker_seconds=0"
            f"&node_timeout={NODE_TIMEOUT_MS / 1000}"
        ),
    )
    refused, calls = [], 0
    deadline = time.monotonic() + 8
    try:
        while time.monotonic() < deadline:
            for n in range(12):
                calls += 1
                try:
                    store.lookup(f"k{n}")
                except StoreUnavailable as exc:
                    refused.append(str(exc)[:120])
            with contextlib.suppress(StoreUnavailable):
                store.bump([TAG])
            time.sleep(0.02)
    finally:
        store.close()
    assert not refused, (len(refused), calls, refused[:3])


# -- fork (gunicorn --preload) ---------------------------------------------------------------------


def test_a_forked_worker_has_its_own_channels_and_hears_bumps(cluster: ClusterSetup) -> None:
    """A store used before the fork (gunicorn ``--preload`` warming up): the forked worker
    serves nothing from the parent's near cache before its own six channels are healthy, and
    then a bump that returned in another process is never older than what it reads."""
    import os

    reader, writer = near(cluster, "reader"), near(cluster, "writer")
    keys = [f"k{n}" for n in range(12)]
    writer.bump([TAG])
    fill(reader, keys, dict.fromkeys(keys, 0))
    to_child_r, to_child_w = os.pipe()
    to_parent_r, to_parent_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker
        code = 1
        try:
            os.close(to_child_w)
            os.close(to_parent_r)
            served = [key for key in keys if reader.near.get(key) is not None and reader.peek(key)]
            until_ready(reader, 10)
            fill(reader, keys, dict.fromkeys(keys, 0))
            os.write(to_parent_w, b"r")
            os.read(to_child_r, 1)  # the bump returned
            stale = []
            for key in keys:
                with contextlib.suppress(StoreUnavailable):
                    if read(reader, key, dict.fromkeys(keys, 1)) != 1:
                        stale.append(key)
            code = 0 if not stale and not served else 3
        finally:
            os._exit(code)
    try:
        os.close(to_child_r)
        os.close(to_parent_w)
        assert os.read(to_parent_r, 1) == b"r"
        writer.bump([TAG])
        os.write(to_child_w, b"b")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        reader.close()
        writer.close()


# -- unexpected messages on a shard's channel -----------------------------------------------------


def test_unexpected_messages_on_a_shard_channel_empty_the_near_cache_and_log_once(
    cluster: ClusterSetup, caplog: pytest.LogCaptureFixture
) -> None:
    """Another application (or a bug) publishes garbage on a shard's channel: the near cache
    empties itself each time, nothing raises, and the log says so without one WARNING per
    message (a flood of 200 gives a flood of warnings today)."""
    import logging

    reader = near(cluster, "reader")
    try:
        keys = [f"k{n}" for n in range(6)]
        fill(reader, keys, dict.fromkeys(keys, 0))
        shard = sharded(reader).shards[0]
        publisher = cluster.node(cluster.owner(cluster.key_slot(shard._base)))
        caplog.set_level(logging.WARNING, logger="freshcache")
        for payload in [b"\xff\xfe", b"no newline", b"e:1\n\xff", b"", b"flush\n", b"x" * 10_000]:
            publisher.execute_command("SPUBLISH", shard._channel, payload)
        until_ready(reader)
        assert all(reader.peek(key) is None for key in keys)
        for _ in range(200):
            publisher.execute_command("SPUBLISH", shard._channel, b"garbage")
        time.sleep(0.3)
        until_ready(reader)
        warnings = [r for r in caplog.records if "unexpected message" in r.getMessage()]
        assert len(warnings) <= 10, len(warnings)
    finally:
        reader.close()


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["15s", "15000ms", "abc"])
def test_a_node_timeout_that_is_not_a_number_names_the_option(value: str) -> None:
    """``node_timeout=15s`` (redis.conf writes milliseconds, people write units): the error
    names the option and says it takes seconds, as for an out-of-range value."""
    with pytest.raises(Exception, match="node_timeout"):
        from_url("c", f"redis+cluster://127.0.0.1:1?prefix=x&node_timeout={value}")


# -- clear() with a master down ----------------------------------------------------------------


def test_clear_with_a_master_and_its_replica_down_reaches_the_shards_that_answer(
    cluster: ClusterSetup,
) -> None:
    """``cluster-require-full-coverage no`` (docs/scaling.md), a master and its replica down
    for good: ``clear()`` cannot reach their two shards, but each of the four others is
    cleared and announces it (``flush`` on its channel), as a bump reaches the shards that
    answer. Each shard's ``clear()`` runs ``RedisCluster.scan_iter``, which scans every master
    of the cluster (three patterns, six shards: 18 scans of the whole keyspace per clear), so
    the dead master fails every shard after its epoch was rotated and before its ``flush``."""
    for port in cluster.ports:
        cluster.node(port).config_set("cluster-require-full-coverage", "no")
    store = from_url(
        "p", cluster.url("prefix=cl&socket_timeout=0.5&connect_timeout=0.5&breaker_seconds=0")
    )
    assert isinstance(store, ShardedRedisStore)
    try:
        store.bump([TAG])
        dead = cluster.masters[0]
        healthy = next(
            shard for shard in store.shards if cluster.owner(cluster.key_slot(shard._base)) != dead
        )
        listener = cluster.node(cluster.owner(cluster.key_slot(healthy._base))).pubsub()
        listener.ssubscribe(healthy._channel)
        assert listener.get_message(timeout=1)["type"] == "ssubscribe"
        cluster.kill(cluster.replica_of(dead))
        cluster.kill(dead)
        time.sleep(1.5)  # flagged failing; no replica to promote
        with contextlib.suppress(StoreUnavailable):
            store.clear()  # the two dead shards cannot be cleared
        message = listener.get_message(timeout=1)
        listener.close()
        assert message is not None and message["data"] == b"flush", message
    finally:
        store.close()
