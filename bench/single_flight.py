"""Single flight: renders per invalidation and latency of a burst, with and without it.

``python -m bench.single_flight [ROUNDS]``: gunicorn, 2 workers x 16 threads, the Redis store; a
100 ms page that reads the database (``bench/site/views.py``). Each round invalidates the page,
then fires 200 concurrent GETs over new connections and records how many times the page was
rendered (every worker appends a line per render to one file) and each request's latency.
Run once with ``LEASE_SECONDS: 0`` (single flight off, as before issue 9 item 6) and once with
the defaults. Prints one JSON object.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import common

BURST = 200
VARIANTS = {"off (LEASE_SECONDS=0)": {"LEASE_SECONDS": 0}, "on (defaults)": {}}


def _get(url: str) -> tuple[int, float]:
    started = time.perf_counter()
    request = urllib.request.Request(url, headers={"Connection": "close"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError:
        status = 0
    return status, (time.perf_counter() - started) * 1000


def run_variant(overrides: dict[str, Any], rounds: int) -> dict[str, Any]:
    renders = Path(tempfile.mkstemp(prefix="bench-flight-")[1])
    env = {"BENCH_FRESHCACHE": json.dumps(overrides), "BENCH_RENDER_LOG": str(renders)}
    server = common.Server("fc-redis", workers=2, env=env, threads=16)
    server.start()
    try:
        with ThreadPoolExecutor(max_workers=BURST) as pool:
            list(pool.map(_get, [server.url + "/slow/"] * 64))  # warm both workers
            per_round, latencies, errors = [], [], 0
            for _ in range(rounds):
                urllib.request.urlopen(
                    urllib.request.Request(server.url + "/slow/bump/", method="POST"), timeout=30
                ).read()
                before = len(renders.read_text().splitlines())
                results = list(pool.map(_get, [server.url + "/slow/"] * BURST))
                per_round.append(len(renders.read_text().splitlines()) - before)
                latencies += [ms for _, ms in results]
                errors += sum(1 for status, _ in results if status != 200)
    finally:
        server.stop()
        renders.unlink(missing_ok=True)
    return {
        "renders_per_invalidation": per_round,
        "median_renders": statistics.median(per_round),
        "p50_ms": common.percentile(latencies, 50),
        "p99_ms": common.percentile(latencies, 99),
        "max_ms": max(latencies),
        "non_200": errors,
    }


def main(rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {"burst": BURST, "rounds": rounds, "variants": {}}
    for name, overrides in VARIANTS.items():
        data = run_variant(overrides, rounds)
        out["variants"][name] = data
        print(f"single flight {name}: renders {data['renders_per_invalidation']}, "
              f"p50 {data['p50_ms']:.0f} ms, p99 {data['p99_ms']:.0f} ms, "
              f"non-200 {data['non_200']}", file=sys.stderr, flush=True)  # fmt: skip
    return out


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)))
