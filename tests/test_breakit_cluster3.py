"""Break-it recheck of the near cache after failovers on Redis Cluster (the fix in
``stores/redis_channel.py``: ``_serves_slot``, ``_check_node``, the slot map read again).

Promise: once a bump has returned, no read that starts afterwards returns an older value.
A real cluster of 3 masters and 3 replicas (``tests/helpers/redis_cluster.py``); two store
objects built from one URL stand for two processes. A failing test is a finding.

The ``test_continuous_*`` tests (a writer and a reader without pause) hold, but note that they
also pass with ``_serves_slot`` made a no-op and the slot map never read again (the code before
the fix): a busy reader's own commands keep its slot map current, so its channels land on the
masters anyway. An idle reader (``tests/test_breakit_cluster2.py``) is the sensitive case.
"""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from freshcache.stores.base import StoreUnavailable
from freshcache.stores.near import NearStore
from tests.helpers.redis_cluster import ClusterSetup
from tests.test_breakit_cluster2 import OPTIONS, TAG, fill, listening, near, read, sharded
from tests.test_cluster import cluster

__all__ = ["cluster"]

pytestmark = pytest.mark.redis


def _slot_of_master(cluster: ClusterSetup, store: NearStore, master: int) -> int | None:
    for shard in sharded(store).shards:
        slot = cluster.key_slot(shard._base)
        if cluster.owner(slot) == master:
            return slot
    return None


class Writer(threading.Thread):
    """Bumps without pause: sets the truth to n, bumps, then publishes ``returned = n``."""

    def __init__(self, store: NearStore, keys: list[str], truth: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.store, self.keys, self.truth = store, keys, truth
        self.returned = 0
        self.stop = threading.Event()
        self.bumps = 0
        self.errors = 0

    def run(self) -> None:
        n = max(self.truth.values())
        while not self.stop.is_set():
            n += 1
            for key in self.keys:
                self.truth[key] = n
            try:
                self.store.bump([TAG])
            except StoreUnavailable:
                self.errors += 1
                time.sleep(0.02)
                continue  # not returned: the reader may see n or older (n - 1 returned)
            self.returned = n
            self.bumps += 1
            time.sleep(0.005)


def _check_reads(
    reader: NearStore,
    writer: Writer,
    keys: list[str],
    stop: threading.Event,
    stale: list,
    counts: dict,
) -> None:
    while not stop.is_set():
        for key in keys:
            floor = writer.returned  # read before the read starts
            try:
                value = read(reader, key, writer.truth)
            except StoreUnavailable:
                counts["bypass"] += 1
                continue
            counts["reads"] += 1
            if reader.peek(key) is not None:
                counts["near"] += 1
            if value < floor:
                stale.append((key, floor, value, time.monotonic()))


def _run_with_load(cluster: ClusterSetup, action) -> None:
    reader, writer_store = near(cluster, "reader"), near(cluster, "writer")
    try:
        keys = [f"k{n}" for n in range(12)]
        truth = dict.fromkeys(keys, 0)
        writer_store.bump([TAG])
        fill(reader, keys, truth)
        writer = Writer(writer_store, keys, truth)
        writer.start()
        stop = threading.Event()
        stale: list = []
        counts = {"reads": 0, "near": 0, "bypass": 0}
        checker = threading.Thread(
            target=_check_reads, args=(reader, writer, keys, stop, stale, counts), daemon=True
        )
        checker.start()
        try:
            action(reader)
            time.sleep(3)
        finally:
            stop.set()
            writer.stop.set()
            checker.join(10)
            writer.join(10)
        print("counts", counts, "bumps", writer.bumps, "errors", writer.errors)
        print("channels", listening(cluster, reader))
        assert writer.bumps > 0
        assert not stale, (len(stale), stale[:5])
    finally:
        reader.close()
        writer_store.close()


def test_continuous_bumps_through_a_rolling_failover(cluster: ClusterSetup) -> None:
    """A writer bumps without pause, a reader (another store object) reads without pause,
    while every master is failed over in turn (``CLUSTER FAILOVER``). No read that started
    after a bump returned may return the older value."""

    def action(reader: NearStore) -> None:
        for master in list(cluster.masters):
            slot = _slot_of_master(cluster, reader, master)
            if slot is not None:
                cluster.manual_fail_over(slot)
                time.sleep(0.5)

    _run_with_load(cluster, action)


def test_continuous_bumps_through_two_quick_failovers_of_one_shard(cluster: ClusterSetup) -> None:
    """The same load; one shard's master fails over to its replica and straight back."""

    def action(reader: NearStore) -> None:
        slot = cluster.key_slot(sharded(reader).shards[0]._base)
        cluster.manual_fail_over(slot)
        cluster.manual_fail_over(slot)

    _run_with_load(cluster, action)


def test_continuous_bumps_through_back_to_back_failovers_of_every_shard(
    cluster: ClusterSetup,
) -> None:
    """The same load; every master fails over and back, without pause between them."""

    def action(reader: NearStore) -> None:
        for master in list(cluster.masters):
            slot = _slot_of_master(cluster, reader, master)
            if slot is not None:
                cluster.manual_fail_over(slot)
                cluster.manual_fail_over(slot)

    _run_with_load(cluster, action)


def test_continuous_bumps_through_failovers_of_every_master_at_once(
    cluster: ClusterSetup,
) -> None:
    """The same load; ``CLUSTER FAILOVER`` sent to every master's replica at once, so every
    shard's channel is on a demoted master at the same moment (a bump reaches every shard, so
    one shard's channel on the master is enough to invalidate; here none is); then every
    demoted master stalls (SIGSTOP) for 0.3 s, twice, while the writer keeps bumping."""

    def action(reader: NearStore) -> None:
        old = list(cluster.masters)
        pairs = [(m, cluster.replica_of(m)) for m in old]
        for _, replica in pairs:
            assert cluster._ask(replica, "CLUSTER", "FAILOVER", timeout=5) is not None
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(Exception):
                if sorted(cluster.masters_now()) == sorted(r for _, r in pairs):
                    break
            assert time.monotonic() < deadline, "no failover"
            time.sleep(0.02)
        for _ in range(2):
            time.sleep(0.2)
            for port in old:
                cluster.pause(port)
            time.sleep(0.3)
            for port in old:
                cluster.resume(port)

    _run_with_load(cluster, action)


def test_continuous_bumps_through_a_rolling_failover_then_stalled_old_masters(
    cluster: ClusterSetup,
) -> None:
    """The same load through a rolling failover (each master in turn, 1 s apart, as
    ``tests/test_breakit_cluster2.py`` does it); then every demoted master stalls (SIGSTOP)
    for 0.3 s, three times, while the writer keeps bumping."""

    def action(reader: NearStore) -> None:
        old = list(cluster.masters)
        for master in old:
            slot = _slot_of_master(cluster, reader, master)
            if slot is not None:
                cluster.manual_fail_over(slot)
                time.sleep(1)
        print("after the rolling failover", listening(cluster, reader))
        for _ in range(3):
            time.sleep(0.2)
            for port in old:
                cluster.pause(port)
            time.sleep(0.3)
            for port in old:
                cluster.resume(port)

    _run_with_load(cluster, action)


def _prefer(store: NearStore, ports: list[int]) -> None:
    """Read the slot map again, asking the nodes ``ports`` first (a stopped node would cost
    a socket timeout)."""
    manager = sharded(store).shards[0]._client.client().nodes_manager
    every = manager.startup_nodes
    manager.startup_nodes = {k: v for k, v in every.items() if v.port in ports}
    try:
        manager.initialize()
    finally:
        manager.startup_nodes.update(every)


@pytest.mark.parametrize("stall", [True, False], ids=["takeover-stalled", "coordinated"])
def test_a_takeover_back_to_the_node_that_ran_the_last_script_has_no_hold(
    cluster: ClusterSetup, stall: bool
) -> None:
    """Every master M fails over to its replica R (``CLUSTER FAILOVER``); no freshcache script
    runs meanwhile, so each shard's server key still names M. The reader's channels follow to
    the R's. Then the R's stall (SIGSTOP: no sunsubscribe, no relay) and each M takes its
    shard back (``CLUSTER FAILOVER TAKEOVER``): its run id is the server key's, so no new
    epoch and no hold (``lua/_cluster.lua``). The reader's last echo is less than three
    heartbeats old, so its near cache counts as healthy: a value it fills now from M, and a
    bump that returns right after, must not leave it serving that value."""
    options = OPTIONS.replace("socket_timeout=0.5", "socket_timeout=1") + "&near_heartbeat=0.2"
    reader, writer = near(cluster, "reader", options), near(cluster, "writer", options)
    try:
        from tests.test_cluster_near import until_ready

        writer.bump([TAG])
        until_ready(reader)
        old = list(cluster.masters)
        pairs = [(m, cluster.replica_of(m)) for m in old]
        for master, _ in pairs:
            slot = _slot_of_master(cluster, reader, master)
            assert slot is not None
            cluster.manual_fail_over(slot)
        deadline = time.monotonic() + 15
        while True:
            where = listening(cluster, reader)
            if all(port == owner for _, port, owner in where) and reader.channel.ready():
                break
            assert time.monotonic() < deadline, where
            time.sleep(0.02)
        print("channels on the R's", where)
        _prefer(writer, old)  # warm: the maps name the R's now
        _prefer(reader, old)
        time.sleep(0.25)
        assert reader.channel.ready()  # an echo drained just now
        started = time.monotonic()
        if stall:
            for _, replica in pairs:
                cluster.pause(replica)
        try:
            for master in old:
                if stall:
                    cluster.node(master).execute_command("CLUSTER", "FAILOVER", "TAKEOVER")
                else:
                    cluster.node(master).execute_command("CLUSTER", "FAILOVER")
            # Until every M sees the three M's as the masters serving slots.
            while True:
                views = [cluster._view(port) for port in old]
                if all(
                    view and sorted(e.port for e in view if e.is_master and e.slots) == sorted(old)
                    for view in views
                ):
                    break
                assert time.monotonic() - started < 5, "the takeovers took too long"
                time.sleep(0.002)
            _prefer(writer, old)
            _prefer(reader, old)
            truth = {"k1": 1}
            t1 = time.monotonic() - started
            first = read(reader, "k1", truth)  # a miss, filled from M
            second = read(reader, "k1", truth)
            kept = reader.peek("k1") is not None
            truth["k1"] = 2
            b0 = time.monotonic()
            writer.bump([TAG])
            bump_took = time.monotonic() - b0
            ready = reader.channel.ready()
            after = read(reader, "k1", truth)
            t2 = time.monotonic() - started
        finally:
            if stall:
                for _, replica in pairs:
                    cluster.resume(replica)
        print(
            f"maps at {t1:.3f}s; first={first} second={second} kept={kept} "
            f"bump took {bump_took:.3f}s ready={ready} after={after} at {t2:.3f}s"
        )
        assert after == 2, "stale: a read that started after the bump returned got 1"
    finally:
        reader.close()
        writer.close()
