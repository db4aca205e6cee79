"""``make bench``: every benchmark, then the tables, JSON and charts in bench/results/.

    .venv/bin/python bench/run.py [--quick] [--only throughput,capture,hitcost,fanout,freshness,
                                                   writes,relay,flood,flight,near,nearmem,
                                                   edge,scaled,cluster]

Needs PostgreSQL (127.0.0.1:5432, user postgres; ``BENCH_PG_HOST``) and Redis (127.0.0.1:6379,
databases 12 and 13; ``BENCH_REDIS``, ``BENCH_REDIS_DB``). Creates and seeds the database
``freshcache_bench`` (``BENCH_PG_NAME``) from scratch, and installs wrk with apt-get and
matplotlib with pip if they are missing.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common


def machine() -> dict[str, Any]:
    import django

    def out(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        except OSError:
            return ""

    lscpu = out("lscpu")
    wanted = ("Architecture", "CPU(s)", "Model name", "Thread(s) per core", "CPU MHz",
              "Hypervisor vendor", "L2 cache", "L3 cache")
    cpu = {
        k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lscpu.splitlines())
        if k.strip() in wanted
    }
    redis_info = common.redis_client(common.REDIS_DB).info("server")
    return {
        "cpu": cpu,
        "memory": out("sh", "-c", "free -h | awk '/Mem:/ {print $2}'"),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "postgresql": common.psql("SHOW server_version"),
        "redis": redis_info.get("redis_version"),
        "gunicorn": out(common.PYTHON, "-m", "gunicorn", "--version"),
        "wrk": out("sh", "-c", "wrk -v 2>&1 | head -1"),
        "load_average_at_start": out("cat", "/proc/loadavg"),
    }


def run_json(args: list[str], variant: str, timeout: float) -> Any:
    out = subprocess.run(
        [common.PYTHON, "-m", *args], cwd=common.ROOT, env=common.django_env(variant),
        capture_output=True, text=True, timeout=timeout, check=False,
    )
    sys.stderr.write(out.stderr)
    if out.returncode:
        raise RuntimeError(f"{' '.join(args)} failed ({out.returncode})")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (about 4 minutes)")
    parser.add_argument("--only", default="", help="comma-separated subset of the benchmarks")
    parser.add_argument("--no-seed", action="store_true", help="reuse the seeded bench database")
    args = parser.parse_args()
    only = {name for name in args.only.split(",") if name}
    quick = args.quick

    def wanted(name: str) -> bool:
        return not only or name in only

    started = time.monotonic()
    results: dict[str, Any] = {
        "quick": quick,
        "command": "make bench" + (" QUICK=1" if quick else ""),
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": machine(),
    }
    if not args.no_seed:
        common.log("creating and seeding the bench database")
        common.fresh_blog()
    from bench import freshness, report, throughput

    errors: dict[str, str] = {}

    def section(name: str, fn: Any) -> Any:
        """Run one benchmark; a failure is reported and the others still run."""
        try:
            return fn()
        except Exception as exc:
            common.log(f"{name} FAILED: {type(exc).__name__}: {exc}")
            errors[name] = f"{type(exc).__name__}: {exc}"
            return None

    if wanted("throughput"):
        results["throughput"] = section("throughput", lambda: throughput.run(quick))
    if wanted("capture"):
        common.log("capture overhead on a miss")
        results["capture"] = section("capture", lambda: run_json(
            ["bench.capture_overhead", "6" if quick else "20"], "nocache", 300
        ))
        if results["capture"]:
            common.log(f"capture overhead: x{results['capture']['ratio_of_medians']:.3f}")
    if wanted("hitcost"):
        common.log("hit cost in-process")
        results["hitcost"] = {}
        for variant in ("django", "fc-redis", "fc-near"):
            data = section(f"hitcost-{variant}", lambda v=variant: run_json(
                ["bench.hit_cost", v, "3" if quick else "8"], v, 300
            ))
            if data:
                results["hitcost"][variant] = data
        common.log("hit cost in-process through the whole stack")
        results["stackcost"] = {}
        for variant in ("fc-redis", "fc-redis-early", "fc-near", "fc-early"):
            data = section(f"stackcost-{variant}", lambda v=variant: run_json(
                ["bench.stack_cost", v, "3" if quick else "8"], v, 300
            ))
            if data:
                results["stackcost"][variant] = data
    if wanted("fanout"):
        levels = "1,100,1000" if quick else "1,100,10000,100000"
        results["fanout"] = {}
        for store in ("memory", "redis", "database"):
            common.log(f"invalidation fan-out on the {store} store ({levels})")
            data = section(f"fanout-{store}", lambda store=store: run_json(
                ["bench.fanout", store, levels, "300"], f"fc-{store}", 600
            ))
            if data:
                results["fanout"][store] = data
    if wanted("freshness"):
        results["freshness"] = {}
        seconds = 12 if quick else 45
        with tempfile.TemporaryDirectory() as tmp:
            for variant in ("fc-database", "fc-redis", "fc-near", "fc-early", "django"):
                data = section(f"freshness-{variant}", lambda v=variant: freshness.run_variant(
                    v, seconds, Path(tmp)
                ))
                if data:
                    results["freshness"][variant] = data
            # The control: no relay anywhere, so the outside writes must be caught stale.
            data = section("freshness-control", lambda: freshness.run_variant(
                "fc-redis", seconds, Path(tmp), relays=False
            ))
            if data:
                results["freshness"]["fc-redis, relays off (control)"] = data
    if wanted("writes"):
        common.log("write overhead of the invalidation log")
        results["writes"] = section("writes", lambda: run_json(
            ["bench.write_cost", "5" if quick else "30"], "fc-redis", 1200
        ))
        if results["writes"]:
            common.log("write overhead, log / none: " + ", ".join(
                f"{op} x{r['log_vs_none']:.2f}" for op, r in results["writes"]["ops"].items()
            ))
    if wanted("relay"):
        common.log("the relay: misses per write, lag after an outage, outside writes")
        results["relay"] = section("relay", lambda: run_json(
            ["bench.relay_lag", *(["--quick"] if quick else [])], "fc-redis", 1200
        ))
    if wanted("flood"):
        results["flood"] = {}
        for policy in ("volatile-lru", "allkeys-lru"):
            common.log(f"a flood of random query strings, Redis at maxmemory, {policy}")
            data = section(f"flood-{policy}", lambda p=policy: run_json(
                ["bench.memory_flood", "1000" if quick else "3000", "8" if quick else "20", p],
                "fc-redis", 600,
            ))
            if data:
                results["flood"][policy] = data
                common.log(f"flood {policy}: peak {data['used_memory_peak']:,} bytes of "
                           f"{data['maxmemory']:,}, statuses {data['statuses']}")
    # -- the near cache (issue 11): coherence at scale, memory under a flood --------------------
    if wanted("near"):
        common.log("near cache: a write returns, another process reads (healthy, kill, pause)")
        results["near_adversarial"] = section("near", lambda: run_json(
            ["bench.near_adversarial", "2000" if quick else "10000"], "fc-near", 900
        ))
        if results["near_adversarial"]:
            common.log("near cache adversarial, stale reads: " + ", ".join(
                f"{mode} {r['stale']}/{r['trials']} ({r['armed']} armed)"
                for mode, r in results["near_adversarial"]["modes"].items()
            ))
    if wanted("nearmem"):
        common.log("near cache: a flood of distinct pages against its byte bound")
        results["near_memory"] = {}
        sizes = {"post": ("300", "1mb") if quick else ("800", "4mb"),
                 "small": ("500", "256kb") if quick else ("1200", "1mb")}
        for shape, (pages, size) in sizes.items():
            data = section(f"nearmem-{shape}", lambda a=[shape, pages, size]: run_json(
                ["bench.near_memory", *a], "fc-redis", 900
            ))
            if data:
                results["near_memory"][shape] = data
                common.log(f"near cache memory, {shape} pages: max counted "
                           f"{data['max_counted_bytes']:,} of {data['bound']:,} bytes; "
                           f"real / counted {data['freed_over_counted']}")
    if wanted("flight"):
        common.log("single flight: renders and latency of a burst after an invalidation")
        results["flight"] = section("flight", lambda: run_json(
            ["bench.single_flight", "3" if quick else "5"], "fc-redis", 600
        ))
    # -- scaled out (issue 14): a read replica, Sentinel and Redis Cluster with a failover -----
    if wanted("scaled"):
        results["scaled"] = {}
        seconds = 12 if quick else 40
        for mode in ("replica", "sentinel", "cluster"):
            common.log(f"freshness scaled out: {mode}")
            data = section(f"scaled-{mode}", lambda m=mode: run_json(
                ["bench.scaled", m, str(seconds)], "fc-redis", 900
            ))
            if data:
                results["scaled"][mode] = data
                common.log(f"scaled {mode}: {data['reads_checked']} reads checked, stale by "
                           f"what served them {data['stale_by_state']}, {data['writes']} writes")
    if wanted("cluster"):
        common.log("hit and write cost on Redis Cluster beside a single Redis (issue 14)")
        results["cluster"] = section("cluster", lambda: run_json(
            ["bench.cluster_costs", "--rounds", "4" if quick else "15",
             "--seconds", "2" if quick else "3"], "fc-redis", 600,
        ))
        if results["cluster"]:
            cl = results["cluster"]
            common.log("cluster / single Redis: " + ", ".join(
                f"{op} x{r['ratio']:.2f}" for op, r in cl["ops"].items()
            ) + f", hit throughput x{cl['throughput']['ratio']:.2f}")
            hit, tp = cl["ops"]["hit"]["ratios"], cl["throughput"]["ratios"]
            near, saved = "cluster_near_over_single_near", "cluster_near_over_cluster"
            common.log(
                f"near cache hits: cluster-near / single-near x{hit[near]:.2f}, cluster-near / "
                f"cluster x{hit[saved]:.3f}; hit throughput x{tp[near]:.2f} and x{tp[saved]:.1f}"
                "; timed hits from the near cache: " + ", ".join(
                    f"{name} {n['near_hits']}/{n['lookups']}"
                    for name, n in cl["near_hits_timed"].items()
                )
            )
    if wanted("edge"):
        from bench import edge

        common.log("the edge: hits through Varnish and nginx, purge lag (issue 12)")
        results["edge"] = section("edge", lambda: edge.run(quick))
    results["errors"] = errors
    results = {k: v for k, v in results.items() if v is not None}
    results["seconds"] = time.monotonic() - started
    name = "results-quick" if quick else "results"
    if only:
        name += "-partial"
    common.write_json(f"{name}.json", results)
    report.write(results, name)
    common.log(f"done in {results['seconds']:.0f}s: bench/results/{name}.md")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
