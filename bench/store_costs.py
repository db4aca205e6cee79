"""What a ``@cached`` hit, a miss and a bump cost on each store. Run by hand, never by tests.

    .venv/bin/python bench/store_costs.py [--rounds 15] [--quick]

Configures Django standalone: PostgreSQL database ``freshcache`` on 127.0.0.1:5432 (created if
missing; override with FRESHCACHE_BENCH_PG="host:port"), and a private ``redis-server`` on a
free loopback port (so that ``INFO commandstats`` counts only this script's commands; falls back
to FRESHCACHE_BENCH_REDIS, default redis://127.0.0.1:6379/14, if the binary is missing).

Measures, per store (memory, database, redis), in µs per operation:

* hit: a ``@cached`` call whose entry is valid (one tag);
* miss: a ``@cached`` call on a new key (trivial compute, then the conditional store);
* bump: ``store.bump()`` of one tag;
* bump with 1, 1,000 and 100,000 entries depending on the bumped tag: must be flat.

Variants are interleaved round by round (the machine is noisy) and the median is reported. For
Redis it also counts round trips per hit from ``INFO commandstats`` deltas: it must be 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

FANOUTS = (1, 1_000, 100_000)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis() -> tuple[str, subprocess.Popen[bytes] | None, str | None]:
    binary = shutil.which("redis-server")
    if binary is None:
        return os.environ.get("FRESHCACHE_BENCH_REDIS", "redis://127.0.0.1:6379/14"), None, None
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="fc-bench-redis-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", tmp],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    import redis

    for _ in range(200):
        try:
            if redis.Redis(port=port, socket_timeout=0.2).ping():
                break
        except redis.RedisError:
            time.sleep(0.02)
    return f"redis://127.0.0.1:{port}/0", proc, tmp


def ensure_database(host: str, port: str, name: str) -> None:
    import psycopg

    with psycopg.connect(host=host, port=port, user="postgres", dbname="postgres") as conn:
        conn.autocommit = True
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')


def configure(redis_url: str) -> None:
    host, _, port = os.environ.get("FRESHCACHE_BENCH_PG", "127.0.0.1:5432").partition(":")
    ensure_database(host, port or "5432", "freshcache")
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="freshcache-bench-not-a-secret",
        INSTALLED_APPS=["django.contrib.contenttypes", "freshcache"],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": "freshcache",
                "USER": "postgres",
                "HOST": host,
                "PORT": port or "5432",
            }
        },
        FRESHCACHE={
            "STORES": {
                "default": "memory://?max_entries=300000&max_tags=300000",
                "memory": "memory://?max_entries=300000&max_tags=300000",
                "database": "database://",
                "redis": redis_url + ("&" if "?" in redis_url else "?") + "prefix=fcbench",
            }
        },
        USE_TZ=True,
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", "freshcache", verbosity=0)


def per_op_us(fn: Callable[[int], Any], n: int, offset: int = 0) -> float:
    start = time.perf_counter_ns()
    for i in range(offset, offset + n):
        fn(i)
    return (time.perf_counter_ns() - start) / n / 1000


def populate_fanout(kind: str, store: Any, tag: str, count: int) -> None:
    """Make ``count`` valid entries that depend on ``tag`` (bulk, where the store allows)."""
    from freshcache.core import store_key

    first = store_key(f"bench-fan:{tag}:0")
    assert store.set(first, b"fc1" + b"x" * 64, [tag], store.begin()) is True
    if count == 1:
        return
    if kind == "memory":
        snapshot = store.begin()
        for i in range(1, count):
            store.set(store_key(f"bench-fan:{tag}:{i}"), b"fc1" + b"x" * 64, [tag], snapshot)
    elif kind == "database":
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO freshcache_entry (key, payload, versions, expires) "
                "SELECT %s || lpad(i::text, 12, '0'), payload, versions, expires "
                "FROM freshcache_entry, generate_series(1, %s) AS i WHERE key = %s "
                "ON CONFLICT (key) DO NOTHING",
                [f"benchfan{len(tag):02d}{abs(hash(tag)) % 10**8:08d}", count - 1, first],
            )
    else:
        client = store._client
        value = client.get(store._entry_prefix + first)
        pipe = client.pipeline(transaction=False)
        for i in range(1, count):
            pipe.set(store._entry_prefix + store_key(f"bench-fan:{tag}:{i}"), value)
            if i % 2000 == 0:
                pipe.execute()
        pipe.execute()


def commandstats(store: Any) -> dict[str, int]:
    info = store._client.info("commandstats")
    return {name: int(stats["calls"]) for name, stats in info.items()}


#: Commands the Lua scripts call: INFO commandstats counts them too, but they cost no round trip.
SCRIPT_COMMANDS = {"get", "set", "hgetall", "hmget", "hset", "del", "incr", "pexpire"}


def round_trips_per_hit(
    store: Any, hit: Callable[[int], Any], n: int = 2000
) -> tuple[float, float, dict[str, float]]:
    """(top-level commands, EVALSHA calls, commands run inside scripts) per hit."""
    before = commandstats(store)
    for i in range(n):
        hit(i)
    after = commandstats(store)
    delta = {k[len("cmdstat_") :]: after[k] - before.get(k, 0) for k in after}
    delta["info"] -= 1  # the INFO that read "after"
    top = sum(v for k, v in delta.items() if k not in SCRIPT_COMMANDS)
    inner = {k: v / n for k, v in delta.items() if k in SCRIPT_COMMANDS and v}
    return top / n, delta.get("evalsha", 0) / n, inner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and ops")
    args = parser.parse_args()
    rounds = 5 if args.quick else args.rounds
    ops = {"memory": 2000, "database": 200, "redis": 1000}
    if args.quick:
        ops = {k: max(50, v // 4) for k, v in ops.items()}

    redis_url, redis_proc, redis_dir = start_redis()
    try:
        configure(redis_url)
        run(rounds, ops)
    finally:
        if redis_proc is not None:
            redis_proc.kill()
            redis_proc.wait()
        if redis_dir:
            shutil.rmtree(redis_dir, ignore_errors=True)


def run(rounds: int, ops: dict[str, int]) -> None:
    import freshcache
    from freshcache import cached, depends_on

    kinds = ["memory", "database", "redis"]
    stores = {kind: freshcache.store(kind) for kind in kinds}
    for store in stores.values():
        store.clear()

    hits: dict[str, Callable[[int], Any]] = {}
    misses: dict[str, Callable[[int], Any]] = {}
    run_id = time.time_ns()
    for kind in kinds:

        @cached(store=kind, name=f"bench.hit.{kind}")
        def hit(i: int) -> int:
            depends_on("bench:hit")
            return 1

        @cached(store=kind, name=f"bench.miss.{kind}.{run_id}")
        def miss(i: int) -> int:
            depends_on("bench:miss")
            return i

        hit(0)
        assert hit.outcome(0).hit, f"{kind}: the hit path does not hit"  # type: ignore[attr-defined]
        hits[kind] = lambda i, h=hit: h(0)
        misses[kind] = miss

    print(f"populating fan-out entries ({', '.join(map(str, FANOUTS))}) ...", file=sys.stderr)
    for kind in kinds:
        for count in FANOUTS:
            populate_fanout(kind, stores[kind], f"bench:fan{count}", count)
    first_bump: dict[tuple[str, int], float] = {}
    for kind in kinds:
        for count in FANOUTS:
            first_bump[kind, count] = per_op_us(
                lambda i, s=stores[kind], t=f"bench:fan{count}": s.bump([t]), 1
            )

    samples: dict[tuple[str, str], list[float]] = defaultdict(list)
    miss_offset = 0
    for r in range(rounds):
        print(f"round {r + 1}/{rounds}", file=sys.stderr)
        for kind in kinds:
            n = ops[kind]
            store = stores[kind]
            samples[kind, "hit"].append(per_op_us(hits[kind], n))
            samples[kind, "miss"].append(per_op_us(misses[kind], n, miss_offset))
            samples[kind, "bump"].append(per_op_us(lambda i, s=store: s.bump(["bench:one"]), n))
            for count in FANOUTS:
                tag = f"bench:fan{count}"
                samples[kind, f"fan{count}"].append(
                    per_op_us(lambda i, s=store, t=tag: s.bump([t]), max(20, n // 4))
                )
        miss_offset += max(ops.values())

    med = {key: statistics.median(values) for key, values in samples.items()}
    print()
    print(f"freshcache store costs: µs per operation, median of {rounds} interleaved rounds")
    print()
    print("| store | hit | miss | miss/hit | bump 1 tag | bump, 1 dependent | 1,000 | 100,000 "
          "| 100,000 / 1 | first bump 1 / 1,000 / 100,000 |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind in kinds:
        f1, f1k, f100k = (med[kind, f"fan{c}"] for c in FANOUTS)
        firsts = " / ".join(f"{first_bump[kind, c]:.0f}" for c in FANOUTS)
        print(
            f"| {kind} | {med[kind, 'hit']:.1f} | {med[kind, 'miss']:.1f} "
            f"| {med[kind, 'miss'] / med[kind, 'hit']:.1f}x | {med[kind, 'bump']:.1f} "
            f"| {f1:.1f} | {f1k:.1f} | {f100k:.1f} | {f100k / f1:.2f} | {firsts} |"
        )
    total, evalsha, inner = round_trips_per_hit(stores["redis"], hits["redis"])
    inside = ", ".join(f"{name.upper()} x{count:g}" for name, count in sorted(inner.items()))
    print()
    print(
        f"Redis round trips per hit: {total:.2f} (EVALSHA {evalsha:.2f}; run inside the "
        f"script, no round trip: {inside}). INFO commandstats deltas over 2,000 hits."
    )
    spread = {k: (min(v), max(v)) for k, v in samples.items()}
    print()
    print("Min / max of the per-round means (noise):")
    for kind in kinds:
        parts = ", ".join(
            f"{op} {spread[kind, op][0]:.1f}-{spread[kind, op][1]:.1f}"
            for op in ("hit", "miss", "bump")
        )
        print(f"- {kind}: {parts}")
    cleanup(stores)


def cleanup(stores: dict[str, Any]) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM freshcache_entry WHERE key LIKE 'benchfan%%'")
    for store in stores.values():
        store.clear()


if __name__ == "__main__":
    main()
