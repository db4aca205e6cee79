"""Throughput and latency: the blog under wrk, one gunicorn per variant, rounds interleaved."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import BENCH, PG_NAME, Server, log, psql, servers

SERVER_VARIANTS = ["nocache", "django", "fc-memory", "fc-database", "fc-redis"]
#: The floor is a constant view served by the no-cache server (same middleware stack).
VARIANTS = [*SERVER_VARIANTS, "floor"]
LABELS = {
    "nocache": "no cache",
    "django": "Django cache_page (Redis)",
    "fc-memory": "freshcache (memory)",
    "fc-database": "freshcache (database)",
    "fc-redis": "freshcache (Redis)",
    "floor": "floor (constant view)",
}
FRONT_PAGES = 5
#: One request in five is a front page (pages 1..5), the rest are posts, uniformly.
FRONT_SHARE = 0.2
CONNECTIONS = 4


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    log("wrk not found: apt-get install -y wrk")
    install = ["apt-get", "install", "-y", "wrk"]
    if subprocess.run(install, capture_output=True, check=False).returncode:
        subprocess.run(["apt-get", "update"], capture_output=True, check=False)
        subprocess.run(install, capture_output=True, check=True)
    path = shutil.which("wrk")
    if not path:
        raise RuntimeError("wrk is not installed and could not be installed")
    return path


def write_paths(directory: Path, posts_in_mix: int) -> dict[str, Path]:
    slugs = psql("SELECT slug FROM blog_post ORDER BY id", PG_NAME).split()
    posts = [f"/post/{slug}/" for slug in slugs[:posts_in_mix]]
    fronts = ["/"] + [f"/?page={n}" for n in range(2, FRONT_PAGES + 1)]
    copies = round(len(posts) * FRONT_SHARE / (1 - FRONT_SHARE) / len(fronts))
    mix = directory / "mix.txt"
    mix.write_text("\n".join(posts + fronts * copies) + "\n")
    floor = directory / "floor.txt"
    floor.write_text("/floor/\n")
    unique = directory / "unique.txt"
    unique.write_text("\n".join(posts + fronts) + "\n")
    return {"mix": mix, "floor": floor, "unique": unique}


def warm(url: str, paths: Path, passes: int, budget: float) -> int:
    """GET every path ``passes`` times over 4 connections (misses fill the cache); time-bounded.

    Memory stores are per worker, so they get several passes: each worker must see each page.
    """
    todo = paths.read_text().split() * passes
    deadline = time.monotonic() + budget
    host, _, port = url.removeprefix("http://").partition(":")
    done = 0

    def worker(chunk: list[str]) -> int:
        count = 0
        for path in chunk:
            if time.monotonic() > deadline:
                break
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            try:
                conn.request("GET", path)
                conn.getresponse().read()
                count += 1
            finally:
                conn.close()
        return count

    with ThreadPoolExecutor(CONNECTIONS) as pool:
        done = sum(pool.map(worker, [todo[i::CONNECTIONS] for i in range(CONNECTIONS)]))
    return done


def run_wrk(wrk: str, url: str, paths: Path, seconds: float) -> dict[str, Any]:
    env = {"WRK_PATHS": str(paths), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
         "-s", str(BENCH / "wrk_mix.lua"), url],
        capture_output=True, text=True, env=env, timeout=seconds + 60, check=False,
    )
    for line in out.stdout.splitlines():
        if line.startswith("WRKJSON "):
            result: dict[str, Any] = json.loads(line[len("WRKJSON "):])
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            return result
    raise RuntimeError(f"wrk printed no result:\n{out.stdout}\n{out.stderr}")


def run(quick: bool) -> dict[str, Any]:
    wrk = ensure_wrk()
    rounds, seconds, posts_in_mix = (1, 3, 60) if quick else (3, 10, 300)
    per_round: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp, servers(SERVER_VARIANTS) as running:
        files = write_paths(Path(tmp), posts_in_mix)

        def target(variant: str) -> tuple[Server, Path]:
            if variant == "floor":
                return running["nocache"], files["floor"]
            return running[variant], files["mix"]

        for variant in ("django", "fc-memory", "fc-database", "fc-redis"):
            passes = 3 if variant == "fc-memory" else 1
            started = time.monotonic()
            count = warm(running[variant].url, files["unique"], passes, 30 if quick else 60)
            log(f"throughput: warmed {variant}: {count} requests in "
                f"{time.monotonic() - started:.1f}s")
        for n in range(rounds):
            # Rotate the order each round so no variant always follows the same neighbour.
            order = VARIANTS[n % len(VARIANTS):] + VARIANTS[: n % len(VARIANTS)]
            for variant in order:
                server, paths = target(variant)
                result = run_wrk(wrk, server.url, paths, seconds)
                result["round"] = n
                per_round[variant].append(result)
                log(
                    f"throughput round {n + 1}/{rounds} {variant}: {result['rps']:.0f} req/s, "
                    f"p50 {result['p50_us'] / 1000:.2f} ms, p99 {result['p99_us'] / 1000:.2f} ms"
                )
                time.sleep(0.5)
    summary = {}
    for variant, results in per_round.items():
        requests = sum(r["requests"] for r in results)
        duration = sum(r["duration_us"] for r in results) / 1e6
        errors = sum(
            r[k] for r in results
            for k in ("errors_connect", "errors_read", "errors_write", "errors_status",
                      "errors_timeout")
        )
        summary[variant] = {
            "label": LABELS[variant],
            "rps": requests / duration,
            "p50_ms": sorted(r["p50_us"] for r in results)[len(results) // 2] / 1000,
            "p99_ms": sorted(r["p99_us"] for r in results)[len(results) // 2] / 1000,
            "requests": requests,
            "errors": errors,
            "rounds": results,
        }
    for variant in VARIANTS:
        summary[variant]["vs_nocache"] = summary[variant]["rps"] / summary["nocache"]["rps"]
        summary[variant]["vs_floor"] = summary[variant]["rps"] / summary["floor"]["rps"]
    return {
        "rounds": rounds,
        "seconds_per_run": seconds,
        "posts_in_mix": posts_in_mix,
        "warmup": "every URL once (memory store: three times, once per worker at least "
                  "with high probability) before the first round",
        "connections": CONNECTIONS,
        "workers": 2,
        "mix": f"{100 - round(FRONT_SHARE * 100)}% post pages (uniform over all posts), "
               f"{round(FRONT_SHARE * 100)}% front pages 1-{FRONT_PAGES}",
        "variants": summary,
    }
