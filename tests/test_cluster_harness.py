"""The Redis Cluster harness (``tests/helpers/redis_cluster.py``) does what the cluster tests
rely on: a real cluster that redis-py routes as the harness says, and a failover whose
promoted replica really lacks the writes :meth:`ClusterSetup.lose_next_writes` made it miss.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from redis.cluster import RedisCluster

from tests.helpers.redis_cluster import ClusterSetup

pytestmark = pytest.mark.redis


@pytest.fixture
def cluster() -> Iterator[ClusterSetup]:
    with ClusterSetup() as running:
        yield running
    assert not running.dir.exists()
    for pid in running.pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def routed(client: RedisCluster, key: str) -> int:
    """The port redis-py sends ``key`` to."""
    node = client.get_node_from_key(key)
    assert node is not None
    return int(node.port)


def test_cluster_routes_as_the_harness_says(cluster: ClusterSetup) -> None:
    assert cluster.ok()
    assert cluster.masters == cluster.ports[:3]
    hosts = ",".join(f"127.0.0.1:{port}" for port in cluster.ports[:3])
    assert cluster.url() == f"redis+cluster://{hosts}"
    assert cluster.url("prefix=t") == f"redis+cluster://{hosts}?prefix=t"
    client: RedisCluster = RedisCluster(host="127.0.0.1", port=cluster.ports[0], socket_timeout=5)
    try:
        owners = set()
        for index in range(30):  # enough keys to land on every master
            key = f"harness:{index}"
            assert client.set(key, index)
            assert client.get(key) == str(index).encode()
            owner = cluster.owner(cluster.key_slot(key))
            assert routed(client, key) == owner
            assert cluster.node(owner).get(key) == str(index).encode()  # no MOVED: it's there
            owners.add(owner)
        assert owners == set(cluster.masters)
        for master in cluster.masters:
            assert cluster.replica_of(master) in set(cluster.ports) - set(cluster.masters)
    finally:
        client.close()


def test_failover_promotes_a_replica_without_the_lost_writes(cluster: ClusterSetup) -> None:
    kept, lost = "{fo}kept", "{fo}lost"  # one slot
    slot = cluster.key_slot(kept)
    master = cluster.owner(slot)
    cluster.node(master).set(kept, "1")
    replica = cluster.lose_next_writes(master)
    assert replica == cluster.replica_of(master)
    assert cluster.node(master).set(lost, "1")  # acknowledged by the master alone

    new = cluster.fail_over(slot)

    assert new == replica
    assert cluster.owner(slot) == new
    assert not cluster.alive(master)
    assert cluster.node(new).get(kept) == b"1"  # what was synced survived...
    assert cluster.node(new).get(lost) is None  # ...and the replica really missed the rest
    assert cluster.ok()
    survivor = next(port for port in cluster.ports if cluster.alive(port))
    client: RedisCluster = RedisCluster(host="127.0.0.1", port=survivor, socket_timeout=5)
    try:
        assert routed(client, lost) == new
        assert client.set(lost, "2")
        assert client.get(lost) == b"2"
    finally:
        client.close()
