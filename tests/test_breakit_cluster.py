"""Break-it review of the Redis Cluster store (``redis+cluster://``, ``stores/redis_shards.py``):
each test failed on the code it was written against and states the expected behaviour in its
docstring. Those still marked ``xfail`` name the fix they need.

Servers: a real cluster of 3 masters and 3 replicas on loopback (``tests/helpers/
redis_cluster.py``), one per test, or nothing at all (a URL nothing listens on).

"Another process" is a second store built from the same URL: its own cluster client, with its
own slot map and connections, as in another worker process.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.test import override_settings

from freshcache.checks.stores import check_store
from freshcache.stores import from_url
from freshcache.stores.base import Hit, Snapshot, StoreUnavailable
from freshcache.stores.redis_shards import ShardedRedisStore
from tests.helpers.redis_cluster import NODE_TIMEOUT_MS, ClusterSetup
from tests.test_cluster import cluster

__all__ = ["cluster"]  # the fixture, from tests/test_cluster.py

pytestmark = pytest.mark.redis

TIMEOUT = 0.2
OPTIONS = (
    f"prefix=bk&socket_timeout={TIMEOUT}&connect_timeout={TIMEOUT}&breaker_seconds=0.3"
    f"&node_timeout={NODE_TIMEOUT_MS / 1000}"  # the cluster's, as a site must set it
)


def process(cluster: ClusterSetup, name: str = "p", options: str = OPTIONS) -> ShardedRedisStore:
    """The store of another process (its own client, slot map and connections)."""
    store = from_url(name, cluster.url(options))
    assert isinstance(store, ShardedRedisStore)
    return store


def master_of(cluster: ClusterSetup, store: ShardedRedisStore, index: int) -> int:
    return cluster.owner(cluster.key_slot(store.shards[index]._base))


def key_first_on_its_master(cluster: ClusterSetup, store: ShardedRedisStore) -> tuple[str, int]:
    """An entry key whose shard is the first of its master's shards in bump order (so a bump
    reaches that master with this shard first), and the shard's index."""
    owners = [master_of(cluster, store, i) for i in range(len(store.shards))]
    for n in range(10_000):
        key = f"k{n}"
        index = store.shard_of(key)
        if owners.index(owners[index]) == index:
            return key, index
    raise AssertionError("no such key")


def pause_until_replaced(cluster: ClusterSetup, slot: int, timeout: float = 30.0) -> int:
    """SIGSTOP the master serving ``slot`` and wait until the nodes still answering agree that
    its replica serves it; the paused master is not told. Returns the paused master's port."""
    old = cluster.owner(slot)
    cluster.pause(old)
    deadline = time.monotonic() + timeout
    while True:
        view = cluster._agreed()
        new = cluster._owner_in(view, slot) if view else None
        if new is not None and new != old:
            return old
        assert time.monotonic() < deadline, "the paused master was not replaced"
        time.sleep(0.05)


def until_whole(cluster: ClusterSetup, timeout: float = 30.0) -> None:
    """Until every node answers and all agree (a resumed master has become a replica)."""
    deadline = time.monotonic() + timeout
    while True:
        view = cluster._agreed()
        whole = view is not None and len(view) == len(cluster.ports) and not cluster.paused
        if whole and len([e for e in view or () if e.is_master and e.slots]) == 3:
            return
        assert time.monotonic() < deadline, "the cluster did not settle"
        time.sleep(0.05)


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run ``fn`` in a thread; its result (or exception) lands in the returned list."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except Exception as exc:
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


# -- a master that hung long enough to be replaced, then resumed ---------------------------------


def test_a_bump_answered_by_a_replaced_master_is_not_lost(cluster: ClusterSetup) -> None:
    """A write's bump is never lost, whatever master answered it.

    A writer process idle while a master hung (SIGSTOP) and was replaced keeps the old slot map
    and its connection to that master. Its next bump is sent there and waits; the master
    resumes and runs it in its first event-loop turn, before it reads the cluster-bus messages
    that demote it. It answered, and the write returned; the master then became a replica and
    resynchronised from the promoted one, which never got the bump (5 of 5 runs before the
    quorum guard of ``lua/_cluster.lua``). Now the script refuses to run there (that master has
    heard from no other master for longer than the node timeout): the bump fails, as in any
    outage, and is replayed. An entry stored on the promoted master before the write must miss
    after it, in every process, for good."""
    writer = process(cluster, "writer")
    key, index = key_first_on_its_master(cluster, writer)
    slot = cluster.key_slot(writer.shards[index]._base)
    writer.bump(["warm"])  # the bump script is cached on every master, as in a live site
    writer.lookup(key)  # connections to every master; the slot map read
    old = pause_until_replaced(cluster, slot)
    zombie_epoch = writer.shards[index].last
    assert zombie_epoch is not None

    reader = process(cluster, "reader")  # a process that starts after the promotion
    snapshot = reader.lookup(key)
    assert isinstance(snapshot, Snapshot)
    assert reader.set(key, b"before the write", ["bk:t"], snapshot) is True
    assert isinstance(reader.lookup(key), Hit)

    thread, out = in_thread(lambda: writer.bump(["bk:t"]))
    time.sleep(0.05)  # the bump waits in the hung master's socket
    cluster.resume(old)
    thread.join(10)
    assert len(out) == 1, out
    if out == [None]:  # acknowledged: by the promoted master, or the guard let the bump through
        landed = writer.shards[index].last
        if landed is None or landed.epoch != zombie_epoch.epoch:
            pytest.skip("the bump reached the promoted master this time: the race was not hit")
    else:  # refused by the replaced master: the shard replays it (a site's log applies it too)
        assert isinstance(out[0], StoreUnavailable), out
    until_whole(cluster)
    deadline = time.monotonic() + 10
    while writer.pending_repair:  # the replay (a timer every breaker_seconds)
        assert time.monotonic() < deadline, "the failed bump was never replayed"
        time.sleep(0.05)

    assert not isinstance(reader.lookup(key), Hit), "the write's bump was lost"
    assert not isinstance(process(cluster, "later").lookup(key), Hit)


def test_a_replaced_master_that_resumes_serves_nothing_a_returned_write_invalidated(
    cluster: ClusterSetup,
) -> None:
    """Once a write returned, no read that starts afterwards returns what it invalidated.

    A reader process idle while its entry's master hung and was replaced; a writer bumps on the
    promoted master and returns. The reader's next lookup goes to the old master (its slot map
    is the old one), which answered it from its own data in its first turn after resuming (5 of
    5 runs before the quorum guard); now the script refuses to run there: a bypass."""
    reader = process(cluster, "reader")
    key, index = key_first_on_its_master(cluster, reader)
    slot = cluster.key_slot(reader.shards[index]._base)
    snapshot = reader.lookup(key)
    assert isinstance(snapshot, Snapshot)
    assert reader.set(key, b"before the write", ["bk:t"], snapshot) is True
    cluster.sync(cluster.owner(slot))
    old = pause_until_replaced(cluster, slot)

    process(cluster, "writer").bump(["bk:t"])  # returned: acknowledged by the promoted master

    thread, out = in_thread(lambda: reader.lookup(key))  # a request that starts afterwards
    time.sleep(0.05)
    cluster.resume(old)
    thread.join(10)
    assert len(out) == 1
    assert not isinstance(out[0], Hit), "served what the returned write invalidated"


# -- the whole cluster unreachable ---------------------------------------------------------------


def test_no_node_answering_is_an_outage_and_every_shard_replays_its_bump(
    cluster: ClusterSetup,
) -> None:
    """With no node of the cluster answering (a network partition, every node hung), a lookup
    raises ``StoreUnavailable`` (never the driver's exception) and opens the breaker; a bump
    raises ``StoreUnavailable`` after every shard was tried, each shard remembers it, and once
    the cluster answers again the entries it invalidated miss.

    redis-py raises ``RedisClusterException`` (not a ``RedisError``) when it cannot read the
    slot map from any node, also in the middle of a command: it went past the store's error
    handling, so the breaker never opened, the failed shard did not remember its bump, the
    shards after it were never tried, and every entry was served stale once the cluster
    came back (12 of 12 here)."""
    store = process(cluster, "s", OPTIONS.replace(f"={TIMEOUT}", "=0.1"))
    keys = [f"k{n}" for n in range(12)]
    for key in keys:
        snapshot = store.lookup(key)
        assert store.set(key, b"v", ["bk:all"], snapshot) is True
    assert {store.shard_of(key) for key in keys} == set(range(len(store.shards)))
    for port in cluster.ports:
        cluster.pause(port)
    try:
        with pytest.raises(StoreUnavailable):
            store.lookup(keys[0])
        with pytest.raises(StoreUnavailable):
            store.bump(["bk:all"])
        assert all(shard.pending_repair for shard in store.shards)
    finally:
        for port in cluster.ports:
            cluster.resume(port)
    until_whole(cluster)
    deadline = time.monotonic() + 10
    served = []
    for key in keys:
        while True:
            try:
                served.append(store.lookup(key))
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    assert not any(isinstance(found, Hit) for found in served), served


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["x{y}z", "a}b", "{site}"])
def test_a_prefix_with_braces_is_refused_with_a_clear_message(prefix: str) -> None:
    """``?prefix=`` on a cluster URL is refused with a clear error when it holds a brace, as
    ``KEY_PREFIX`` is: each shard's keys are wrapped in a hash tag of their own.

    ``x{y}z`` made the store's constructor loop for ever (every shard's tag hashed to the slot
    of ``y``, and ``shard_tags`` looked for one in another range): the first request of every
    process and ``manage.py check`` hung. ``a}b`` put all six shards on one slot (the tags
    were chosen by the slot of a string Redis does not hash)."""
    url = f"redis+cluster://127.0.0.1:1?prefix={prefix}"
    # In a process of its own: the loop never ended, and a thread cannot be stopped.
    code = f"from freshcache.stores.redis_shards import ShardedRedisStore as S; S('c', {url!r})"
    try:
        built = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},  # this freshcache
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("building the store hangs")
    assert "ValueError" in built.stderr and "brace" in built.stderr, built.stderr[-500:]
    errors = check_store("c", url, warn=False)
    assert [e.id for e in errors] == ["freshcache.E005"]
    assert "brace" in str(errors[0].msg)


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://127.0.0.1:1?socket_timeout=0.2&connect_timeout=0.2",  # nothing listens
    ],
)
def test_manage_py_check_warns_when_the_cluster_cannot_be_reached(url: str) -> None:
    """``manage.py check`` warns (freshcache.W002) when a cluster store cannot be reached, as it
    does for every other Redis store. It said nothing: the check looked only at ``RedisStore``
    instances, and a cluster store is a ``ShardedRedisStore``. In bounded time: asking each of
    the six shards what the ACL refuses (W011) made redis-py try the nodes six times (22 s)."""
    with override_settings(FRESHCACHE={"STORE": url}):
        started = time.monotonic()
        assert [m.id for m in check_store("default", url, warn=True)] == ["freshcache.W002"]
        assert time.monotonic() - started < 10


def test_manage_py_check_warns_about_a_cluster_node_that_is_not_in_cluster_mode() -> None:
    """A ``redis+cluster://`` URL naming a plain Redis (cluster mode off): every lookup is a
    bypass; ``manage.py check`` must say so (W002), not nothing."""
    from urllib.parse import urlsplit

    from django.conf import settings

    plain = urlsplit(settings.REDIS_URL)
    url = f"redis+cluster://{plain.hostname}:{plain.port or 6379}?socket_timeout=0.2"
    with override_settings(FRESHCACHE={"STORE": url}):
        assert [m.id for m in check_store("default", url, warn=True)] == ["freshcache.W002"]


def test_manage_py_check_warns_about_a_cluster_memory_policy(cluster: ClusterSetup) -> None:
    """freshcache.W006 on a cluster whose masters refuse writes once full (noeviction)."""
    for port in cluster.ports:
        cluster.node(port).config_set("maxmemory", "100mb")
        cluster.node(port).config_set("maxmemory-policy", "noeviction")
    url = cluster.url(OPTIONS)
    with override_settings(FRESHCACHE={"STORE": url}):
        assert [m.id for m in check_store("default", url, warn=True)] == ["freshcache.W006"]


def test_manage_py_check_warns_when_node_timeout_is_not_the_clusters(
    cluster: ClusterSetup,
) -> None:
    """freshcache.W010: the quorum guard needs the cluster's ``cluster-node-timeout`` (500 ms
    here); the URL's ``node_timeout`` defaults to Redis's default, 15 s."""
    right = cluster.url(OPTIONS)
    assert "node_timeout=0.5" in right
    wrong = right.replace("node_timeout=0.5", "node_timeout=15")
    with override_settings(FRESHCACHE={"STORE": wrong}):
        (warning,) = check_store("default", wrong, warn=True)
        assert warning.id == "freshcache.W010" and "node_timeout=0.5" in str(warning.hint)
    with override_settings(FRESHCACHE={"STORE": right}):
        assert check_store("default", right, warn=True) == []


# -- resharding --------------------------------------------------------------------------------


def _node_id(cluster: ClusterSetup, port: int) -> str:
    found = cluster._ask(port, "CLUSTER", "MYID")
    assert isinstance(found, str)
    return found


def _migrate(cluster: ClusterSetup, source: int, target: int, keys: list[Any]) -> None:
    """``MIGRATE … KEYS``, as ``redis-cli --cluster reshard`` sends them (no ``REPLACE``)."""
    cluster.node(source).execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)


def test_a_resharding_under_writes_is_not_stopped_by_freshcache(cluster: ClusterSetup) -> None:
    """Moving a slot that holds a shard (``redis-cli --cluster reshard``: ``SETSLOT IMPORTING``
    and ``MIGRATING``, then ``MIGRATE … KEYS`` in batches, then ``SETSLOT NODE``) completes
    while the site writes: freshcache never creates, on the node importing the slot, a key
    that the node migrating it still holds.

    Once the shard's position keys had moved, a bump was sent by ``ASK`` to the importing
    node, where it ran (its declared keys were all there) and wrote the tag's version, and the
    fence its server key, though both still lived on the migrating node. The next batch then
    failed with ``BUSYKEY Target key name already exists``: ``redis-cli`` stopped and left the
    slot open. The scripts now declare every key they write (``RedisStore._declared``): while a
    script's keys are split between the two nodes, Redis answers ``TRYAGAIN``, a bypass or a
    bump kept for the replay, and nothing is created on the importing node."""
    store = process(cluster, "writer")
    index = 1
    shard = store.shards[index]
    slot = cluster.key_slot(shard._base)
    key = next(f"k{n}" for n in range(10_000) if store.shard_of(f"k{n}") == index)
    snapshot = store.lookup(key)
    assert store.set(key, b"before", ["bk:moved"], snapshot) is True
    store.bump(["bk:other"])  # a tag version that the migrating node holds
    source = cluster.owner(slot)
    target = next(port for port in cluster.masters_now() if port != source)
    cluster.node(target).execute_command(
        "CLUSTER", "SETSLOT", slot, "IMPORTING", _node_id(cluster, source)
    )
    cluster.node(source).execute_command(
        "CLUSTER", "SETSLOT", slot, "MIGRATING", _node_id(cluster, target)
    )
    # The first batch happens to hold the position keys (redis-cli takes them in hash order).
    _migrate(cluster, source, target, shard._position_keys())
    with contextlib.suppress(StoreUnavailable):  # if it fails, its shards replay it
        store.bump(["bk:other", "bk:moved"])  # a write during the resharding
    busy = []
    while keys := cluster.node(source).execute_command("CLUSTER", "GETKEYSINSLOT", slot, 10):
        try:
            _migrate(cluster, source, target, keys)
        except Exception as exc:
            busy.append((str(exc), [k.decode() for k in keys]))
            break
    assert not busy, busy
    for port in [target, source, *(p for p in cluster.masters_now() if p not in (source, target))]:
        cluster.node(port).execute_command(
            "CLUSTER", "SETSLOT", slot, "NODE", _node_id(cluster, target)
        )
    assert not isinstance(process(cluster, "reader").lookup(key), Hit)


# -- prefixes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["tenant", "site", "app", "cache", "www"])
def test_stores_with_different_prefixes_share_no_shard(prefix: str) -> None:
    """Two stores on one cluster with different prefixes never share a key: the prefix is
    what keeps stores (sites, tenants) apart on a shared server.

    A shard's hash tag was ``prefix:i``, or ``prefix:i:n`` when ``prefix:i`` fell outside the
    shard's slot range, so ``tenant`` and ``tenant:1`` could both pick ``tenant:1:1``: one
    shard's epoch, sequence, tag versions, entries and leases were the two stores' (a bump or
    a ``clear()`` of one moved the other's position; an entry of one was the other's hit)."""
    from freshcache.stores.redis_shards import shard_tags

    mine = set(shard_tags(prefix))
    for other in [f"{prefix}:{i}" for i in range(6)] + [
        f"{prefix}:{i}:{n}" for i in range(6) for n in range(4)
    ]:
        assert not mine & set(shard_tags(other)), (prefix, other)


def test_a_store_never_serves_another_prefixes_entry() -> None:
    """Store ``tenant`` and store ``tenant:1`` on one cluster: an entry stored by one is never
    a hit of the other, and a ``clear()`` of one does not move the other's position."""
    from tests.conftest import shared_cluster

    running = shared_cluster()
    one = process(running, "one", "prefix=tenant")
    two = process(running, "two", "prefix=tenant:1")
    key = next(f"k{n}" for n in range(10_000) if one.shard_of(f"k{n}") == 1)
    one.clear()
    two.clear()
    snapshot = one.lookup(key)
    assert one.set(key, b"tenant's page", ["bk:t"], snapshot) is True
    assert isinstance(one.lookup(key), Hit)
    assert not isinstance(two.lookup(key), Hit)
    two.clear()
    assert isinstance(one.lookup(key), Hit)
    one.clear()
