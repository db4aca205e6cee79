"""Hit and write cost on Redis Cluster beside a single Redis (issue 14), in one process.

    .venv/bin/python -m bench.cluster_costs [--rounds 15] [--seconds 3] [--processes 2]

Starts a throwaway ``redis-server`` (bench/throwaway_redis.py) and a throwaway 3-master,
3-replica Redis Cluster (tests/helpers/redis_cluster.py), builds freshcache's store on each
(``redis://`` and ``redis+cluster://``, configured standalone: no database, no blog), and the
same two with a near cache in front (``&near_cache=64mb``: ``single-near``, ``cluster-near``;
same server, same prefix, so the same entries), and measures, interleaved round by round and in
alternating order (the machine is noisy), the microseconds of one store operation:

* ``hit``: ``store.lookup(key)`` of a stored, valid entry (3 tags, 4 KB payload), rotating over
  600 entries spread over every shard. On the near stores every entry was read twice and the
  channel is healthy (``store.channel.ready()``) before the first round, and each round waits
  for it again; the lookups the near cache answered are counted (``NearCache.hits``), as is
  how many entries it held before the round (``store.peek``), so a figure from lookups that
  went to Redis would show;
* ``miss_set``: ``store.lookup`` of a new key (a miss, which returns the snapshot), then
  ``store.set`` against that snapshot: what a miss costs the store, the computation aside;
* ``bump``: ``store.bump`` of one tag no entry depends on (on the cluster: one script per
  shard, 6).

The near stores run ``miss_set`` and ``bump`` too: a few hundred milliseconds a round, and it
shows what the near cache adds to a write (its own invalidations, the messages it takes in).

then the scripts each operation runs (``INFO commandstats`` deltas summed over the masters:
EVALSHA and EVAL; the near channels' heartbeats, PUBLISH / SPUBLISH from their threads, land
in the command list of whichever store is being counted, never in the scripts), and the hit
throughput of ``--processes`` processes doing lookups for ``--seconds`` each round, the four
stores taking turns (a near worker warms its own near cache and waits for its channel before
the common start). Ratios are cluster / single Redis, cluster-near / single-near and
cluster-near / cluster; the absolute figures belong to this machine. Every server is stopped by
its PID in a ``finally``.

Prints one JSON object (the last line of stdout); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

STORES = ("single", "single-near", "cluster", "cluster-near")
NEAR = ("single-near", "cluster-near")
NEAR_CACHE = "64mb"
HIT_KEYS = 600
TAGS = ["bench:post", "bench:list", "bench:site"]
BUMPED = "bench:bumped"  # no entry depends on it: a bump never turns the hits into misses
PAYLOAD = b"fc1" + b"x" * 4093
PREFIX = "fcbenchcl"
OPS = {"hit": 1000, "miss_set": 400, "bump": 200}


def log(message: str) -> None:
    print(f"[cluster_costs {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def configure(urls: dict[str, str]) -> None:
    """Django standalone, freshcache's stores only (store operations need no database)."""
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="freshcache-bench-not-a-secret",
        INSTALLED_APPS=["django.contrib.contenttypes", "freshcache"],
        DATABASES={},
        FRESHCACHE={"STORES": {"default": "memory://", **urls}, "KEY_PREFIX": PREFIX,
                    "LOG_DATABASE": None},
        USE_TZ=True,
        SILENCED_SYSTEM_CHECKS=["freshcache.W001"],
    )
    import django

    django.setup()


def hit_key(i: int) -> str:
    from freshcache.payload import store_key

    return store_key(f"bench-cluster-hit:{i % HIT_KEYS}")


def fill(store: Any) -> None:
    """The entries the hits look up (each one checked: a lookup must hit)."""
    from freshcache.stores import Hit

    for i in range(HIT_KEYS):
        key = hit_key(i)
        found = store.lookup(key)
        if not isinstance(found, Hit) and not store.set(key, PAYLOAD, TAGS, found):
            raise RuntimeError(f"{store!r}: entry {i} was not stored")
    misses = sum(1 for i in range(HIT_KEYS) if not isinstance(store.lookup(hit_key(i)), Hit))
    if misses:
        raise RuntimeError(f"{store!r}: {misses} of the stored entries miss")


# -- the near cache: healthy, warm, and what it answered ----------------------------------------


def until_ready(store: Any, seconds: float = 15.0) -> float:
    """Wait until the near store's channel is healthy (every shard's, on the cluster: subscribed,
    its heartbeat echoed); the seconds waited."""
    start = time.monotonic()
    while not store.channel.ready():
        if time.monotonic() - start > seconds:
            raise RuntimeError(f"{store!r}: the near cache's channel never became healthy")
        time.sleep(0.01)
    return time.monotonic() - start


def resident(store: Any) -> int:
    """How many of the hit entries the near cache would serve now (``peek``: the channel
    healthy and the entry held), once the channel is healthy. Counts as near hits: read the
    counters after it."""
    until_ready(store)
    return sum(1 for i in range(HIT_KEYS) if store.peek(hit_key(i)) is not None)


def warm(store: Any) -> int:
    """Every hit entry read twice with the channel healthy (the first lookup keeps it in the
    near cache, the second is served from it), until the near cache holds them all (a moment
    the channel was not ready costs a keep: read again, 5 tries); how many it holds."""
    held = 0
    for _ in range(5):
        until_ready(store)
        for _ in range(2):
            for i in range(HIT_KEYS):
                store.lookup(hit_key(i))
        held = resident(store)
        if held == HIT_KEYS:
            break
    return held


def near_counters(store: Any) -> tuple[int, int]:
    """Lookups the near cache answered, and lookups it was asked and did not hold (a lookup
    while the channel is not ready asks neither: it goes to Redis uncounted)."""
    return store.near.hits, store.near.misses


def per_op_us(fn: Callable[[int], Any], n: int, offset: int = 0) -> float:
    start = time.perf_counter_ns()
    for i in range(offset, offset + n):
        fn(i)
    return (time.perf_counter_ns() - start) / n / 1000


def operations(store: Any, run: str) -> dict[str, Callable[[int], Any]]:
    from freshcache.payload import store_key
    from freshcache.stores import Hit

    def hit(i: int) -> None:
        if not isinstance(store.lookup(hit_key(i)), Hit):
            raise RuntimeError(f"{store!r}: a stored entry missed")

    def miss_set(i: int) -> None:
        key = store_key(f"bench-cluster-miss:{run}:{i}")
        found = store.lookup(key)
        if isinstance(found, Hit):
            raise RuntimeError(f"{store!r}: a new key hit")
        store.set(key, PAYLOAD, TAGS, found)

    def bump(i: int) -> None:
        store.bump([BUMPED])

    return {"hit": hit, "miss_set": miss_set, "bump": bump}


def script_calls(clients: list[Any]) -> dict[str, int]:
    """Commands run so far (those scripts ran included), summed over ``clients`` (the
    masters)."""
    total: dict[str, int] = {}
    for client in clients:
        for name, stats in client.info("commandstats").items():
            total[name] = total.get(name, 0) + int(stats["calls"])
    return total


def scripts_per_op(
    clients: list[Any], fn: Callable[[int], Any], n: int, offset: int
) -> dict[str, Any]:
    """EVALSHA + EVAL calls per operation, and every command counted (those the scripts run
    included; the INFO reading the counts excluded)."""
    before = script_calls(clients)
    for i in range(offset, offset + n):
        fn(i)
    after = script_calls(clients)
    delta = {k: after[k] - before.get(k, 0) for k in after}
    delta["cmdstat_info"] = delta.get("cmdstat_info", 0) - len(clients)  # the INFO reading them
    scripts = delta.get("cmdstat_evalsha", 0) + delta.get("cmdstat_eval", 0)
    # Commands the scripts run count too (no round trip each): listed, not added up.
    commands = {k.removeprefix("cmdstat_"): v / n for k, v in sorted(delta.items()) if v > 0}
    return {"scripts": scripts / n, "commands": commands}


# -- throughput: worker processes --------------------------------------------------------------


def worker(name: str, url: str, seconds: float) -> None:
    """Connects (and on a near store warms its near cache and waits for its channel), prints
    {"ready": ...}, reads its start time (time.monotonic, system-wide on Linux) from stdin, does
    lookups of the stored entries for ``seconds`` from then; prints {"lookups": n, ...}."""
    configure({name: url})
    import freshcache
    from freshcache.stores import Hit

    store = freshcache.store(name)
    store.lookup(hit_key(0))  # connect (and read the slot map) before the clock starts
    near = name in NEAR
    held = warm(store) if near else None
    print(json.dumps({"ready": True, "resident": held}), flush=True)
    start_at = float(sys.stdin.readline())
    offset = os.getpid()
    while time.monotonic() < start_at:
        time.sleep(0.001)
    before = near_counters(store) if near else (0, 0)
    deadline = start_at + seconds
    n = misses = 0
    while True:
        for _ in range(50):
            if not isinstance(store.lookup(hit_key(offset + n)), Hit):
                misses += 1
            n += 1
        if time.monotonic() >= deadline:
            break
    elapsed = time.monotonic() - start_at
    after = near_counters(store) if near else (0, 0)
    print(json.dumps({"lookups": n, "misses": misses, "seconds": elapsed, "resident": held,
                      "near_hits": after[0] - before[0], "near_misses": after[1] - before[1]}))


def throughput(name: str, url: str, processes: int, seconds: float) -> dict[str, Any]:
    """``processes`` workers started together once each is ready; lookups/s summed over them."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.cluster_costs", "worker", name, url, str(seconds)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])},
        )
        for _ in range(processes)
    ]
    results = []
    try:
        for proc in procs:
            assert proc.stdout is not None
            if not proc.stdout.readline():  # {"ready": ...}, or nothing: it failed
                raise RuntimeError(f"a throughput worker of {name} failed before starting")
        start_at = time.monotonic() + 0.2
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{start_at!r}\n")
            proc.stdin.flush()
        for proc in procs:
            out, _ = proc.communicate(timeout=seconds + 60)
            if proc.returncode:
                raise RuntimeError(f"a throughput worker of {name} failed ({proc.returncode})")
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return {
        "lookups_per_s": sum(r["lookups"] / r["seconds"] for r in results),
        "lookups": sum(r["lookups"] for r in results),
        "misses": sum(r["misses"] for r in results),
        "near_hits": sum(r["near_hits"] for r in results),
        "near_misses": sum(r["near_misses"] for r in results),
        "resident": [r["resident"] for r in results],
    }


# -- the run -------------------------------------------------------------------------------------


def ratios(values: dict[str, float]) -> dict[str, float]:
    """cluster / single, cluster-near / single-near, cluster-near / cluster (what the near cache
    saves on a cluster) and single-near / single."""
    return {
        "cluster_over_single": values["cluster"] / values["single"],
        "cluster_near_over_single_near": values["cluster-near"] / values["single-near"],
        "cluster_near_over_cluster": values["cluster-near"] / values["cluster"],
        "single_near_over_single": values["single-near"] / values["single"],
    }


def run(rounds: int, seconds: float, processes: int) -> dict[str, Any]:
    from tests.helpers.redis_cluster import ClusterSetup

    from bench.throwaway_redis import RedisServer

    with RedisServer() as single, ClusterSetup() as cluster:
        near = f"&near_cache={NEAR_CACHE}"
        urls = {"single": f"{single.url}?prefix={PREFIX}",
                "single-near": f"{single.url}?prefix={PREFIX}{near}",
                "cluster": cluster.url(f"prefix={PREFIX}"),
                "cluster-near": cluster.url(f"prefix={PREFIX}{near}")}
        configure(urls)
        import freshcache
        from freshcache.stores.near import NearStore
        from freshcache.stores.redis_shards import shard_tags

        stores = {name: freshcache.store(name) for name in STORES}
        kinds = {
            name: type(store).__name__
            + (f"({type(store.inner).__name__})" if isinstance(store, NearStore) else "")
            for name, store in stores.items()
        }
        expected = {"single": "RedisStore", "single-near": "NearStore(RedisStore)",
                    "cluster": "ShardedRedisStore",
                    "cluster-near": "NearStore(ShardedRedisStore)"}
        if kinds != expected:
            raise RuntimeError(f"the URLs built {kinds}")
        tags = shard_tags(PREFIX)
        masters = cluster.masters_now()
        per_master = {port: 0 for port in masters}
        for tag in tags:
            per_master[cluster.owner(cluster.key_slot("{" + tag + "}"))] += 1
        log(f"single Redis on {single.port}; cluster masters {masters}, shards per master "
            f"{list(per_master.values())}")
        for store in stores.values():  # all cleared first: a clear empties every near cache
            store.clear()
        for store in stores.values():
            fill(store)
        for name in NEAR:
            held = warm(stores[name])
            log(f"{name}: channel healthy, near cache holds {held} of {HIT_KEYS} entries")
        ops = {name: operations(store, f"{time.time_ns()}-{name}") for name, store in
               stores.items()}
        for name in STORES:  # warm up: connections, scripts loaded, slot map read
            for fn in ops[name].values():
                per_op_us(fn, 20, 10**8)

        samples: dict[tuple[str, str], list[float]] = {}
        # The timed hits of each near store: lookups, answered by the near cache, asked of it
        # and not held there, and the entries it held before each round (peek).
        near_timed: dict[str, dict[str, Any]] = {
            name: {"lookups": 0, "near_hits": 0, "near_misses": 0, "resident_by_round": [],
                   "waited_s": 0.0}
            for name in NEAR
        }
        offset = 0
        for r in range(rounds):
            order = STORES if r % 2 == 0 else STORES[::-1]
            for op, n in OPS.items():
                for name in order:
                    if op == "hit" and name in NEAR:
                        store, counts = stores[name], near_timed[name]
                        counts["waited_s"] += until_ready(store)
                        counts["resident_by_round"].append(resident(store))
                        before = near_counters(store)
                        us = per_op_us(ops[name][op], n, offset)
                        after = near_counters(store)
                        counts["lookups"] += n
                        counts["near_hits"] += after[0] - before[0]
                        counts["near_misses"] += after[1] - before[1]
                    else:
                        us = per_op_us(ops[name][op], n, offset)
                    samples.setdefault((name, op), []).append(us)
            offset += max(OPS.values())
            log(f"round {r + 1}/{rounds} (single / single-near / cluster / cluster-near): "
                + ", ".join(
                    f"{op} " + " / ".join(f"{samples[name, op][-1]:.0f}" for name in STORES)
                    + " µs" for op in OPS)
                + "; near hits " + ", ".join(
                    f"{name} {near_timed[name]['near_hits']}/{near_timed[name]['lookups']}"
                    for name in NEAR))

        groups = {"single": [single.client()],
                  "cluster": [cluster.node(port) for port in cluster.masters_now()]}
        scripts = {
            name: {op: scripts_per_op(groups[name.removesuffix("-near")], ops[name][op], 200,
                                      offset + 10**7)
                   for op in OPS}
            for name in STORES
        }
        for group in groups.values():
            for client in group:
                client.close()

        tput: dict[str, list[float]] = {name: [] for name in STORES}
        tput_misses = dict.fromkeys(STORES, 0)
        tput_near: dict[str, dict[str, Any]] = {
            name: {"lookups": 0, "near_hits": 0, "near_misses": 0, "resident": []}
            for name in NEAR
        }
        for r in range(2):
            for name in STORES if r % 2 == 0 else STORES[::-1]:
                got = throughput(name, urls[name], processes, seconds)
                tput[name].append(got["lookups_per_s"])
                tput_misses[name] += got["misses"]
                served = ""
                if name in NEAR:
                    for key in ("lookups", "near_hits", "near_misses"):
                        tput_near[name][key] += got[key]
                    tput_near[name]["resident"] += got["resident"]
                    served = f", {got['near_hits']:,} of {got['lookups']:,} from the near cache"
                log(f"throughput {name}, round {r + 1}: {got['lookups_per_s']:,.0f} lookups/s"
                    + served)

        med = {key: statistics.median(values) for key, values in samples.items()}
        tput_mean = {name: statistics.mean(values) for name, values in tput.items()}
        result: dict[str, Any] = {
            "rounds": rounds,
            "ops_per_round": OPS,
            "entry": {"tags": len(TAGS), "payload_bytes": len(PAYLOAD), "hit_keys": HIT_KEYS},
            "near_cache": NEAR_CACHE,
            "cluster": {"masters": len(masters), "replicas": len(masters),
                        "shards": len(tags), "shards_per_master": sorted(per_master.values()),
                        "redis_servers": 2 * len(masters)},
            "ops": {
                op: {
                    # single / cluster as before (bench/report.py's table), then every store
                    "single_us": med["single", op],
                    "cluster_us": med["cluster", op],
                    "ratio": med["cluster", op] / med["single", op],
                    "single_range_us": [min(samples["single", op]), max(samples["single", op])],
                    "cluster_range_us": [min(samples["cluster", op]),
                                         max(samples["cluster", op])],
                    "by_store": {
                        name: {"us": med[name, op],
                               "range_us": [min(samples[name, op]), max(samples[name, op])]}
                        for name in STORES
                    },
                    "ratios": ratios({name: med[name, op] for name in STORES}),
                }
                for op in OPS
            },
            "near_hits_timed": near_timed,
            "per_op": scripts,
            "throughput": {
                "processes": processes,
                "seconds": seconds,
                "rounds": 2,
                "single_lookups_per_s": tput_mean["single"],
                "cluster_lookups_per_s": tput_mean["cluster"],
                "ratio": tput_mean["cluster"] / tput_mean["single"],
                "lookups_per_s": tput_mean,
                "ratios": ratios(tput_mean),
                "by_round": tput,
                "misses": tput_misses,
                "near": tput_near,
            },
            "cores": os.cpu_count(),
        }
        for store in stores.values():
            store.clear()
            store.close()
        return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(sys.argv[2], sys.argv[3], float(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=3.0, help="per throughput round")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(run(args.rounds, args.seconds, args.processes)))


if __name__ == "__main__":
    main()
