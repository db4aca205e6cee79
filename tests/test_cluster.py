"""Redis Cluster (issue 14 item 1): the store follows a failover of the master serving its slot,
and a promoted replica that missed bumps its master acknowledged never serves what those bumps
invalidated.

A real cluster of 3 masters and 3 replicas on loopback (``tests/helpers/redis_cluster.py``).
The store's keys are spread over 6 shards, two per master; an entry lives on one shard
(``home``), a tag has a version on every shard. Replication is asynchronous:
:meth:`ClusterSetup.lose_next_writes` makes the replica of the entry's master miss the next
bumps for certain; the master is then killed and the cluster promotes the replica.
Each test checks first that the promoted server really lacks the bump (so that, without the
fence, the entry would validate), then that nothing built before the write is served.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

import freshcache
from freshcache import cached, depends_on, invalidate
from freshcache.checks.stores import check_store
from freshcache.stores import from_url, redacted
from freshcache.stores.base import Hit, StoreUnavailable
from freshcache.stores.redis import RedisStore
from freshcache.stores.redis_shards import SHARDS, ShardedRedisStore
from tests.helpers.redis_cluster import ClusterSetup
from tests.helpers.relay import relay_once_applied
from tests.test_sentinel import BREAKER, TIMEOUT, until_stored
from tests.testapp.models import Item

pytestmark = pytest.mark.redis

PREFIX = "fc"

truth: dict[str, int] = {}


@cached
def read(name: str) -> int:
    depends_on(f"cluster:{name}")
    return truth[name]


def write(name: str) -> int:
    """Change the data, then invalidate: acknowledged when this returns."""
    truth[name] = truth.get(name, 0) + 1
    invalidate(f"cluster:{name}")
    return truth[name]


@pytest.fixture
def cluster() -> Iterator[ClusterSetup]:
    truth.clear()
    with ClusterSetup() as running:
        yield running
    truth.clear()


def configured(url: str) -> Any:
    return override_settings(
        FRESHCACHE={
            "STORE": url,
            "SOCKET_TIMEOUT": TIMEOUT,
            "CONNECT_TIMEOUT": TIMEOUT,
            "BREAKER_SECONDS": BREAKER,
        }
    )


def node(port: int) -> Any:
    import redis

    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)


def home(cluster: ClusterSetup, name: str) -> tuple[str, int]:
    """``(hash tag, slot)`` of the shard holding the entry of ``read(name)``."""
    store = freshcache.store()
    assert isinstance(store, ShardedRedisStore)
    key = next(k for k in _all_entry_keys(cluster) if name in k)
    tag = key[1 : key.index("}")]
    assert store.shards[store.shard_of(key[key.index(":e:") + 3 :])]._base == "{" + tag + "}"
    return tag, cluster.key_slot("{" + tag + "}")


def _all_entry_keys(cluster: ClusterSetup) -> list[str]:
    found = []
    for port in cluster.masters_now():
        found += [k.decode() for k in node(port).scan_iter(match="{" + PREFIX + ":*}:e:*")]
    return found


def tag_version(port: int, shard: str, tag: str) -> bytes | None:
    return node(port).get(f"{{{shard}}}:t:{tag}")


def test_the_url_names_nodes_and_refuses_what_a_cluster_has_not() -> None:
    from urllib.parse import urlsplit

    from freshcache.stores.redis_cluster import nodes

    url = "redis+cluster://127.0.0.1:7000,[::1]:7001,node3?prefix=x"
    assert nodes(urlsplit(url)) == [
        ("127.0.0.1", 7000),
        ("::1", 7001),
        ("node3", 6379),  # the default port when none is given
    ]
    # Nothing listens there: the store is built all the same (the client connects at its
    # first use), and a lookup is a bypass, never an error.
    store = from_url("c", url)
    assert isinstance(store, ShardedRedisStore) and all(s.cluster for s in store.shards)
    with pytest.raises(StoreUnavailable):
        store.lookup("k")
    store.close()
    guide = "redis+cluster://10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000?prefix=site"
    readme = "redis+cluster://n1:7000,n2:7000,n3:7000"
    for written in (guide, readme):  # docs/scaling.md's and the README's, as written
        built = from_url("c", written)
        assert isinstance(built, ShardedRedisStore)
        built.close()
    shown = "redis+cluster://:s3cret@127.0.0.1:7000,127.0.0.1:7001?prefix=site"
    assert "s3cret" not in redacted(shown) and "s3cret" not in repr(from_url("c", shown))
    for url, message in (
        ("redis+cluster://127.0.0.1:7000/3", "only database 0"),
        ("redis+cluster://127.0.0.1:port", "port must be a number"),
        ("redis+cluster://127.0.0.1:7000?db=2", "unknown option(s) db"),
        ("redis+cluster://127.0.0.1:7000?near_cache=1mb&near_heartbeat=0.3", "at most 0.2 s"),
    ):
        with pytest.raises((ValueError, ImproperlyConfigured), match=re.escape(message)):
            from_url("c", url)
    slow = "redis+cluster://127.0.0.1:7000?near_cache=1mb&near_heartbeat=0.3"
    with pytest.raises(ValueError, match=re.escape("at most 0.2 s on redis+cluster://")):
        RedisStore("c", slow)
    assert [e.id for e in check_store("c", slow, warn=False)] == ["freshcache.E005"]


def test_entries_spread_over_every_master_and_bumps_reach_every_shard(
    cluster: ClusterSetup,
) -> None:
    with configured(cluster.url()):
        store = freshcache.store()
        assert isinstance(store, ShardedRedisStore) and len(store.shards) == SHARDS
        for i in range(60):
            truth[f"n{i}"] = i
            assert read.outcome(f"n{i}").stored is True
            assert read.outcome(f"n{i}").hit is True
        per_master = {
            port: len(list(node(port).scan_iter(match="{" + PREFIX + ":*}:e:*")))
            for port in cluster.masters_now()
        }
        assert len(per_master) == 3 and min(per_master.values()) >= 5, per_master
        # Two shards on each master: their slots are evenly spaced over the slot ranges.
        owners = [cluster.owner(cluster.key_slot(shard._base)) for shard in store.shards]
        assert sorted(owners.count(port) for port in set(owners)) == [2, 2, 2]
        assert write("n7") == 8
        versions = [
            tag_version(cluster.owner(cluster.key_slot(s._base)), s._base[1:-1], "cluster:n7")
            for s in store.shards
        ]
        assert all(v is not None for v in versions), versions  # the bump reached every shard
        assert read.outcome("n7").value == 8
        assert read.outcome("n7").hit is True
        assert read.outcome("n8").hit is True  # other entries are untouched
        assert store.ping() is True


def test_the_store_follows_a_failover_and_a_lost_bump_serves_nothing_stale(
    cluster: ClusterSetup,
) -> None:
    with configured(cluster.url()):
        truth["b"] = 1
        assert read.outcome("b").stored is True
        assert read.outcome("b").hit is True
        shard, slot = home(cluster, "b")
        master = cluster.owner(slot)
        replica = cluster.replica_of(master)
        epoch = node(master).get(f"{{{shard}}}:epoch")
        before = tag_version(master, shard, "cluster:b")

        cluster.lose_next_writes(master)
        assert write("b") == 2  # acknowledged by the master only
        assert tag_version(master, shard, "cluster:b") != before
        promoted = cluster.fail_over(slot)
        assert promoted == replica
        # The promoted replica lacks the bump: the entry's recorded version is current there.
        assert tag_version(promoted, shard, "cluster:b") == before
        assert any(k.startswith("{" + shard + "}") for k in _all_entry_keys(cluster))

        seen = until_stored(lambda: read.outcome("b"))
        assert set(seen) == {2}, seen  # never the value the lost bump invalidated
        assert read.outcome("b").hit is True
        assert node(promoted).get(f"{{{shard}}}:epoch") != epoch  # the fence started a new one


def test_a_connection_opened_before_the_promotion_is_fenced_too(cluster: ClusterSetup) -> None:
    """The URL names only the replica: the client's first connection goes to it (to read the
    slot map) while it is a replica, and is the one used once it is promoted. A fence run once
    per new connection would never run on it; the fence in every script does."""
    with configured(cluster.url()):
        truth["c"] = 1
        read("c")
        shard, slot = home(cluster, "c")
    master = cluster.owner(slot)
    replica = cluster.replica_of(master)
    with configured(f"redis+cluster://127.0.0.1:{replica}"):
        freshcache.store().clear()
        assert read.outcome("c").stored is True
        before = tag_version(master, shard, "cluster:c")
        cluster.lose_next_writes(master)
        assert write("c") == 2
        assert cluster.fail_over(slot) == replica
        assert tag_version(replica, shard, "cluster:c") == before
        assert set(until_stored(lambda: read.outcome("c"))) == {2}


def test_readers_and_a_writer_across_a_failover_never_read_stale(cluster: ClusterSetup) -> None:
    """Concurrent readers while a writer writes and the master dies: once a write returned, no
    read that starts afterwards returns an older value."""
    with configured(cluster.url()):
        truth["d"] = 0
        read("d")
        slot = home(cluster, "d")[1]
        returned = [0]
        stale: list[tuple[int, int]] = []
        reads = [0]
        done = threading.Event()

        def reader() -> None:
            while not done.is_set():
                before = returned[0]
                value = read("d")
                reads[0] += 1
                if value < before:
                    stale.append((before, value))

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for thread in threads:
            thread.start()
        try:
            for step in range(60):
                if step == 30:
                    cluster.lose_next_writes(cluster.owner(slot))
                if step == 35:
                    cluster.fail_over(slot)
                returned[0] = write("d")
                time.sleep(0.01)
        finally:
            done.set()
            for thread in threads:
                thread.join(30)
        assert not stale, stale[:5]
        assert reads[0] > 60
        assert set(until_stored(lambda: read.outcome("d"))) == {truth["d"]}


def test_a_manual_failover_keeps_reads_fresh(cluster: ClusterSetup) -> None:
    """``CLUSTER FAILOVER``: the old master stays up as a replica and answers ``MOVED``; the
    store follows the slot to the promoted replica."""
    with configured(cluster.url()):
        truth["e"] = 1
        assert read.outcome("e").stored is True
        slot = home(cluster, "e")[1]
        old = cluster.owner(slot)
        promoted = cluster.manual_fail_over(slot)
        assert promoted != old and cluster.owner(slot) == promoted
        assert write("e") == 2
        assert set(until_stored(lambda: read.outcome("e"))) == {2}
        assert read.outcome("e").hit is True


@cached
def count_named(name: str) -> int:
    return Item.objects.filter(name=name).count()


@pytest.mark.postgres
def test_the_relay_applies_writes_from_outside_django_to_the_promoted_master(
    cluster: ClusterSetup, transactional_db: None
) -> None:
    """Item 4: the invalidation log's relay works on a cluster, after a failover too."""
    from tests.log.conftest import clear_log, outside_params

    clear_log()
    with configured(cluster.url()), psycopg.connect(**outside_params(), autocommit=True) as out:
        assert count_named("out") == 0
        cluster.fail_over(cluster.key_slot(freshcache.store().shards[0]._base))
        assert set(until_stored(lambda: count_named.outcome("out"))) == {0}
        out.execute("INSERT INTO testapp_item (name, value) VALUES ('out', 0)")
        relay_once_applied()
        assert count_named("out") == 1  # the relay's bump reached the promoted master
        # A hit, once the relay has drained what failed during the failover (until then hits
        # are refused: "hit arrived while the invalidation log was not applied").
        assert set(until_stored(lambda: count_named.outcome("out"))) == {1}
        assert count_named.outcome("out").hit is True


def test_a_slot_moved_under_reads_and_writes_completes_and_serves_nothing_stale(
    cluster: ClusterSetup,
) -> None:
    """A resharding of the slot holding a shard, as ``redis-cli --cluster reshard`` makes it
    (``SETSLOT IMPORTING``/``MIGRATING``, ``MIGRATE … KEYS`` in batches without ``REPLACE``,
    ``SETSLOT NODE``), while readers and a writer use the store: every batch moves (no
    ``BUSYKEY``), no read that starts after a write returned gets an older value, and the
    shard serves hits from its new master afterwards."""
    from tests.test_breakit_cluster import OPTIONS, _migrate, _node_id, process

    store = process(cluster, "site", OPTIONS)
    index = 2
    keys = [f"r{n}" for n in range(400) if store.shard_of(f"r{n}") == index][:12]
    slot = cluster.key_slot(store.shards[index]._base)
    source = cluster.owner(slot)
    target = next(port for port in cluster.masters_now() if port != source)
    truth = dict.fromkeys(keys, 0)
    returned = [0]
    stale: list[tuple[str, int, int]] = []
    reads = [0]
    done = threading.Event()

    def read(key: str) -> int:
        found = store.lookup(key)
        if isinstance(found, Hit):
            return int(found.payload)
        value = truth[key]
        store.set(key, str(value).encode(), ["moved", key], found)
        return value

    def reading() -> None:
        while not done.is_set():
            for key in keys:
                before = returned[0]
                try:
                    value = read(key)
                except StoreUnavailable:
                    continue  # a bypass while the shard's keys are split
                reads[0] += 1
                if value < before:
                    stale.append((key, before, value))

    def writing() -> None:
        step = 0
        while not done.is_set():
            step += 1
            for key in keys:
                truth[key] = step
            try:
                store.bump(["moved"])
            except StoreUnavailable:
                time.sleep(0.05)
                continue  # not returned: its shards replay it
            returned[0] = step
            time.sleep(0.005)

    store.bump(["moved"])  # the first bumps of a new store wait out its hold (1 s)
    for key in keys:
        read(key)
    threads = [threading.Thread(target=reading), threading.Thread(target=writing)]
    for thread in threads:
        thread.start()
    busy = []
    moved = 0
    try:
        time.sleep(0.2)
        cluster.node(target).execute_command(
            "CLUSTER", "SETSLOT", slot, "IMPORTING", _node_id(cluster, source)
        )
        cluster.node(source).execute_command(
            "CLUSTER", "SETSLOT", slot, "MIGRATING", _node_id(cluster, target)
        )
        while batch := cluster.node(source).execute_command("CLUSTER", "GETKEYSINSLOT", slot, 3):
            try:
                _migrate(cluster, source, target, batch)
            except Exception as exc:
                busy.append((str(exc), [k.decode() for k in batch]))
                break
            moved += len(batch)
            time.sleep(0.1)  # the site runs between batches
        others = [p for p in cluster.masters_now() if p not in (source, target)]
        for port in [target, source, *others]:
            cluster.node(port).execute_command(
                "CLUSTER", "SETSLOT", slot, "NODE", _node_id(cluster, target)
            )
        time.sleep(0.5)
    finally:
        done.set()
        for thread in threads:
            thread.join(30)
    assert not busy, busy
    assert not stale, stale[:5]
    assert reads[0] > 50
    assert cluster.owner(slot) == target
    assert moved > 10  # entries, tag versions, marks and the position: several batches
    deadline = time.monotonic() + 15
    while True:
        with contextlib.suppress(StoreUnavailable):
            if all(read(key) == truth[key] for key in keys) and all(
                isinstance(store.lookup(key), Hit) for key in keys
            ):
                break
        assert time.monotonic() < deadline, "the moved shard never served hits again"
        time.sleep(0.1)
