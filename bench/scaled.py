"""Freshness scaled out (issue 14): the freshness checker of bench/freshness.py on two setups.

``replica``  the blog on a throwaway PostgreSQL primary with a streaming standby
             (tests/helpers/pg_standby.py); a router sends every read to the standby and
             ``READ_REPLICAS`` names it (bench/site/settings.py, docs/scaling.md). While the
             checker runs, the standby's replay is paused for 150 ms every 500 ms, so misses
             regularly read rows older than writes that returned.
``sentinel`` freshcache's store is Redis behind three sentinels (tests/helpers/redis_sentinel.py);
             halfway through, the replica is made to miss the bumps of the next 0.3 s (stopped,
             its link dropped), then the primary is killed and the sentinels promote the replica.
``cluster``  freshcache's store is a Redis Cluster of three masters and three replicas
             (tests/helpers/redis_cluster.py; ``redis+cluster://``, six shards, two per master);
             halfway through, the master serving the shard holding the most entries has its
             replica miss the bumps of the next 0.3 s, then it is killed and the cluster
             promotes that replica (both of that master's shards move; the other four do not).
``cluster-near`` the same with a near cache in every process (``near_cache=16mb``: sharded
             pub/sub, docs/scaling.md "Near cache").

    .venv/bin/python -m bench.scaled replica|sentinel|cluster|cluster-near SECONDS

prints one JSON object: the checker's result plus what the setup did. A read replica that is
behind makes reads stale without any cache (the view reads what the replica has); freshcache's
promise there is that it never *stores* such a read, so the result splits stale reads by what
served them (``stale_by_state``): a stale ``hit`` is the cache's fault, a stale ``bypass`` or
``miss`` is the replica's lag, as the site has it without freshcache.

Each mode runs in a process of its own, started by bench/run.py: bench.common reads the
database's address when it is imported.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

PAUSE_EVERY = 0.5
PAUSE_FOR = 0.15


def replica(seconds: float) -> dict[str, Any]:
    from tests.helpers.pg_standby import Standby

    with Standby() as pg:
        os.environ["BENCH_PG_HOST"] = f"127.0.0.1:{pg.primary_port}"
        from bench import common, freshness

        common.fresh_blog()  # on the primary alone: the seeding reads what it just wrote
        _caught_up(pg)
        os.environ["BENCH_PG_REPLICA"] = f"127.0.0.1:{pg.standby_port}"  # every process after
        done = threading.Event()
        pauses = [0]

        def pause_replay() -> None:
            while not done.wait(PAUSE_EVERY):
                pg.sql(pg.standby_port, "SELECT pg_wal_replay_pause()")
                pauses[0] += 1
                time.sleep(PAUSE_FOR)
                pg.sql(pg.standby_port, "SELECT pg_wal_replay_resume()")

        pauser = threading.Thread(target=pause_replay, daemon=True)
        pauser.start()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                result = freshness.run_variant("fc-redis", seconds, Path(tmp))
        finally:
            done.set()
            pauser.join(10)
            pg.sql(pg.standby_port, "SELECT pg_wal_replay_resume()")
        result["setup"] = {
            "replay_pauses": pauses[0], "pause_ms": PAUSE_FOR * 1000,
            "every_ms": PAUSE_EVERY * 1000,
        }
        return result


def _caught_up(pg: Any, timeout: float = 60) -> None:
    """Wait until the standby replayed everything the primary wrote (the seeding)."""
    target = pg.sql(pg.primary_port, "SELECT pg_current_wal_insert_lsn()")
    deadline = time.monotonic() + timeout
    query = f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn"
    while pg.sql(pg.standby_port, query) != "t":
        if time.monotonic() > deadline:
            raise RuntimeError("the standby did not catch up with the seeded blog")
        time.sleep(0.1)


def sentinel(seconds: float) -> dict[str, Any]:
    from tests.helpers.redis_sentinel import SentinelSetup

    with SentinelSetup() as setup:
        os.environ["BENCH_FRESHCACHE"] = json.dumps({"STORE": setup.url()})
        from bench import common, freshness

        common.fresh_blog()
        timings: dict[str, float] = {}
        failed: list[str] = []

        def fail_over() -> None:
            try:
                time.sleep(seconds / 2)
                setup.lose_next_writes()
                time.sleep(0.3)  # bumps acknowledged by the primary only
                started = time.monotonic()
                setup.fail_over()
                timings["failover_seconds"] = time.monotonic() - started
            except Exception as exc:  # reported in the result, the checker still finishes
                failed.append(f"{type(exc).__name__}: {exc}")

        thread = threading.Thread(target=fail_over, daemon=True)
        thread.start()
        with tempfile.TemporaryDirectory() as tmp:
            result = freshness.run_variant("fc-redis", seconds, Path(tmp))
        thread.join(60)
        result["setup"] = {**timings, "failover_errors": failed}
        return result


CLUSTER_PREFIX = "fcbenchcluster"


def cluster(seconds: float, near: bool = False) -> dict[str, Any]:
    from tests.helpers.redis_cluster import ClusterSetup

    from freshcache.stores.redis_shards import shard_tags

    with ClusterSetup() as setup:
        store_url = setup.url(f"prefix={CLUSTER_PREFIX}" + ("&near_cache=16mb" if near else ""))
        os.environ["BENCH_FRESHCACHE"] = json.dumps({"STORE": store_url})
        from bench import common, freshness

        common.fresh_blog()
        bases = ["{" + tag + "}" for tag in shard_tags(CLUSTER_PREFIX)]
        slots = [setup.key_slot(base) for base in bases]
        info: dict[str, Any] = {
            "masters": setup.masters_now(),
            "shards_per_master": sorted(
                sum(1 for slot in slots if setup.owner(slot) == port)
                for port in setup.masters_now()
            ),
        }
        failed: list[str] = []

        def entries(port: int, base: str) -> int:
            with setup.node(port) as node:
                return sum(1 for _ in node.scan_iter(match=f"{base}:e:*", count=1000))

        def seq(port: int, base: str) -> int:
            with setup.node(port) as node:
                return int(node.get(f"{base}:seq") or 0)

        def fail_over() -> None:
            try:
                time.sleep(seconds / 2)
                owners = [setup.owner(slot) for slot in slots]
                counts = [entries(owner, base) for owner, base in zip(owners, bases, strict=True)]
                index = max(range(len(bases)), key=counts.__getitem__)  # the shard most entries
                old, base = owners[index], bases[index]
                moved = [i for i, owner in enumerate(owners) if owner == old]
                info.update(
                    entries_by_shard=counts, shard=index, slot=slots[index], old_master=old,
                    shards_moved=moved, entries_on_moved_shards=sum(counts[i] for i in moved),
                )
                info["replica"] = setup.lose_next_writes(old)
                seq_at_pause = seq(old, base)
                time.sleep(0.3)  # bumps acknowledged by the master only
                # Bumps of that shard the promoted replica never gets (at least: one made
                # between the pause and the first read is not counted).
                info["bumps_lost_on_shard"] = seq(old, base) - seq_at_pause
                started = time.monotonic()
                info["new_master"] = setup.fail_over(slots[index])
                info["failover_seconds"] = time.monotonic() - started
            except Exception as exc:  # reported in the result, the checker still finishes
                failed.append(f"{type(exc).__name__}: {exc}")

        thread = threading.Thread(target=fail_over, daemon=True)
        thread.start()
        with tempfile.TemporaryDirectory() as tmp:
            # fc-near counts the hits its near caches served (bench/site/near_probe.py); the
            # store URL is the cluster's either way (BENCH_FRESHCACHE).
            variant = "fc-near" if near else "fc-redis"
            result = freshness.run_variant(variant, seconds, Path(tmp))
        thread.join(60)
        if "new_master" in info:  # the fence started a new epoch on the promoted replica
            with setup.node(info["new_master"]) as node:
                base = bases[info["shard"]]
                info["new_epoch_on_promoted"] = node.get(f"{base}:server") == (
                    node.info("server")["run_id"].encode()
                )
        result["setup"] = {**info, "failover_errors": failed}
        return result


if __name__ == "__main__":
    mode, seconds = sys.argv[1], float(sys.argv[2])
    modes = {
        "replica": replica,
        "sentinel": sentinel,
        "cluster": cluster,
        "cluster-near": lambda seconds: cluster(seconds, near=True),
    }
    if mode not in modes:
        raise SystemExit(f"unknown mode {mode!r}: {', '.join(modes)}")
    print(json.dumps(modes[mode](seconds)))
