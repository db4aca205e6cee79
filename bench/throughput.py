"""Throughput and latency: the blog under wrk, one server per variant, rounds interleaved.

Issue 11's setting: gunicorn with 2 sync workers, wrk with 16 connections, the blog's mix of
pages. In the same rounds, reported apart: the cached variants on the front pages alone (hits
that run no SQL: the post page counts its views on every request), and the mix served by
uvicorn (ASGI, 2 workers).
"""

from __future__ import annotations

import http.client
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.common import BENCH, PG_NAME, Server, log, psql, servers

SERVER_VARIANTS = [
    "nocache", "django", "fc-memory", "fc-database", "fc-redis", "fc-redis-early", "fc-near",
    "fc-early",
]
#: The floor is a constant view served by the no-cache server (same middleware stack).
VARIANTS = [*SERVER_VARIANTS, "floor"]
#: Served by uvicorn too: the variants issue 11 compares, and no cache.
ASGI_SERVER_VARIANTS = ["nocache", "django", "fc-redis", "fc-redis-early", "fc-near", "fc-early"]
ASGI_VARIANTS = [*ASGI_SERVER_VARIANTS, "floor"]
#: On the front pages alone, by the same gunicorn servers (the floor is the mix's).
HITS_VARIANTS = ["django", "fc-redis", "fc-redis-early", "fc-near", "fc-early", "floor-page"]
#: On the front pages too, by gunicorn servers that keep the example's cache badge
#: (``BENCH_BADGE=1``, bench/site/settings.py): what the demo's per-request work costs each.
BADGE_VARIANTS = ["fc-near", "floor-page"]
#: On the front pages alone, by the uvicorn servers: async hits, with no database at all.
ASGI_HITS_VARIANTS = [
    "django", "fc-redis", "fc-redis-early", "fc-near", "fc-early", "floor-page",
]
#: How a run names a variant under uvicorn, on the front pages alone, and with the badge.
ASGI, HITS, BADGE = "asgi:", "hits:", "badge:"
LABELS = {
    "nocache": "no cache",
    "django": "Django cache_page (Redis)",
    "fc-memory": "freshcache (memory)",
    "fc-database": "freshcache (database)",
    "fc-redis": "freshcache (Redis)",
    "fc-near": "freshcache (Redis + near cache)",
    "fc-early": "freshcache (near cache + early hits)",
    "fc-redis-early": "freshcache (Redis + early hits)",
    "floor": "floor (constant view)",
    "floor-page": "floor (the front page as a constant)",
}
#: Issue 11's targets, requests/s of one variant over another's: (numerator, denominator, target).
TARGETS = [
    ("fc-near", "floor", 0.90), ("fc-near", "django", 1.5), ("fc-redis", "django", 1.3),
    ("fc-early", "floor", 0.90), ("fc-early", "django", 1.5), ("fc-redis-early", "django", 1.3),
]
FRONT_PAGES = 5
#: One request in five is a front page (pages 1..5), the rest are posts, uniformly.
FRONT_SHARE = 0.2
#: wrk's connections, as issue 11 measures: 16 against 2 workers.
CONNECTIONS = 16
#: The warm-up's concurrent clients: enough to reach both workers, few enough not to pile
#: misses of the same page on each other.
WARM_CONNECTIONS = 4
#: Stores in a worker's own memory: every worker must see every page, so the warm-up passes over
#: the URLs several times (connections land on a worker at random: after 6 passes a given worker
#: has missed a given page with probability 1/64).
PER_WORKER = {"fc-memory": 6, "fc-near": 6, "fc-early": 6}
#: A near cache is used once its invalidation channel is healthy, up to three heartbeats (0.05 s
#: each) after a process's first request: the warm-up waits this long after its first pass.
NEAR_SETTLE = 1.0


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
    floor_page = directory / "floor-page.txt"
    floor_page.write_text("/floor/page/\n")
    unique = directory / "unique.txt"
    unique.write_text("\n".join(posts + fronts) + "\n")
    front = directory / "front.txt"
    front.write_text("\n".join(fronts) + "\n")
    return {
        "mix": mix, "floor": floor, "floor-page": floor_page, "unique": unique, "front": front
    }


def warm(url: str, paths: Path, passes: int, budget: float) -> int:
    """GET every path ``passes`` times over ``WARM_CONNECTIONS`` connections (misses fill the
    cache); time-bounded."""
    todo = paths.read_text().split() * passes
    deadline = time.monotonic() + budget
    host, _, port = url.removeprefix("http://").partition(":")

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

    n = WARM_CONNECTIONS
    with ThreadPoolExecutor(n) as pool:
        return sum(pool.map(worker, [todo[i::n] for i in range(n)]))


def warm_variant(name: str, server: Server, paths: Path, quick: bool) -> None:
    """Fill ``server``'s cache: one pass (the shared store), then, for a store local to each
    worker, more passes once a near cache's channel has had time to become healthy."""
    variant = name.removeprefix(ASGI).removeprefix(BADGE)
    started = time.monotonic()
    budget = 30 if quick else 60
    count = warm(server.url, paths, 1, budget)
    if variant in PER_WORKER:
        if variant in ("fc-near", "fc-early"):
            time.sleep(NEAR_SETTLE)
        count += warm(server.url, paths, PER_WORKER[variant] - 1, budget)
    log(f"throughput: warmed {name}: {count} requests in {time.monotonic() - started:.1f}s")


def run_wrk(wrk: str, url: str, paths: Path, seconds: float) -> dict[str, Any]:
    env = {"WRK_PATHS": str(paths), "PATH": "/usr/bin:/bin"}
    # A new connection per request, for every server: gunicorn's sync workers close each one
    # anyway; uvicorn would keep wrk's 16 connections, all accepted by whichever worker woke
    # first, and one worker would serve the whole run.
    out = subprocess.run(
        [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
         "-H", "Connection: close", "-s", str(BENCH / "wrk_mix.lua"), url],
        capture_output=True, text=True, env=env, timeout=seconds + 60, check=False,
    )
    for line in out.stdout.splitlines():
        if line.startswith("WRKJSON "):
            result: dict[str, Any] = json.loads(line[len("WRKJSON "):])
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            return result
    raise RuntimeError(f"wrk printed no result:\n{out.stdout}\n{out.stderr}")


def group_cpu(pgid: int) -> float:
    """CPU seconds used so far by the live processes of process group ``pgid`` (a server the
    bench started: its master and workers, every thread included)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # After the command name: state, ppid, pgrp, ..., utime (12th), stime (13th).
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process has exited
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def summarize(results: list[dict[str, Any]], label: str) -> dict[str, Any]:
    """One variant's rounds: requests/s over the whole time, medians of the rounds' p50 and p99."""
    requests = sum(r["requests"] for r in results)
    duration = sum(r["duration_us"] for r in results) / 1e6
    errors = sum(
        r[k] for r in results
        for k in ("errors_connect", "errors_read", "errors_write", "errors_status",
                  "errors_timeout")
    )
    return {
        "label": label,
        "rps": requests / duration,
        "p50_ms": sorted(r["p50_us"] for r in results)[len(results) // 2] / 1000,
        "p99_ms": sorted(r["p99_us"] for r in results)[len(results) // 2] / 1000,
        "requests": requests,
        "errors": errors,
        # What the server's processes spent per request, whoever else loads the machine (but
        # not PostgreSQL's or Redis's share).
        "cpu_ms_per_request": sum(r["server_cpu_s"] for r in results) / requests * 1000,
        "rounds": results,
    }


def ratios(
    summary: dict[str, dict[str, Any]],
    nocache: dict[str, Any] | None,
    floor: dict[str, Any],
    extra: tuple[tuple[str, str, float], ...] = (),
    standard: bool = True,
) -> list[dict[str, Any]]:
    """Add each variant's ratios to no cache (if given) and to the floor; return issue 11's
    ratios (unless not ``standard``) and ``extra`` ones, of the same form as :data:`TARGETS`."""
    for r in summary.values():
        if nocache:
            r["vs_nocache"] = r["rps"] / nocache["rps"]
        r["vs_floor"] = r["rps"] / floor["rps"]
    every = {**summary, "floor": floor}
    out = []
    for a, b, target in (*(TARGETS if standard else ()), *extra):
        if a not in every or b not in every:
            continue  # a variant this part of the run does not have
        # Each round ran every variant once, minutes apart at most: a ratio within a round
        # suffers less from the machine's load changing than one of whole-run totals.
        per_round = sorted(
            x["rps"] / y["rps"] for x, y in zip(every[a]["rounds"], every[b]["rounds"],
                                                strict=True)
        )
        out.append({
            "ratio": f"{a} / {b}",
            "value": every[a]["rps"] / every[b]["rps"],
            "round_median": per_round[len(per_round) // 2],
            "round_range": [per_round[0], per_round[-1]],
            "target": target,
        })
    return out


def uvicorn_flavour() -> str:
    """uvicorn's version and what its ``auto`` settings pick here (uvloop and httptools if
    installed, else asyncio and h11)."""
    version = importlib.metadata.version("uvicorn")
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    parser = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"uvicorn {version} ({loop}, {parser})"


def run(quick: bool) -> dict[str, Any]:
    wrk = ensure_wrk()
    # Many short rounds rather than a few long ones: the machine's load drifts, and a variant
    # measured in more places of the rotation is less at the mercy of one bad minute.
    rounds, seconds, posts_in_mix = (1, 3, 60) if quick else (6, 5, 300)
    names = (VARIANTS + [HITS + v for v in HITS_VARIANTS] + [ASGI + v for v in ASGI_VARIANTS]
             + [ASGI + HITS + v for v in ASGI_HITS_VARIANTS] + [BADGE + v for v in BADGE_VARIANTS])
    per_round: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        sync = stack.enter_context(servers(SERVER_VARIANTS))
        asgi = stack.enter_context(servers(ASGI_SERVER_VARIANTS, asgi=True))
        badge = stack.enter_context(servers(["nocache", "fc-near"], env={"BENCH_BADGE": "1"}))
        running = {
            **sync,
            **{ASGI + v: server for v, server in asgi.items()},
            **{BADGE + v: server for v, server in badge.items()},
        }
        files = write_paths(Path(tmp), posts_in_mix)

        def target(name: str) -> tuple[Server, Path]:
            if name == ASGI + HITS + "floor-page":
                return running[ASGI + "nocache"], files["floor-page"]
            if name.startswith(ASGI + HITS):
                return running[ASGI + name.removeprefix(ASGI + HITS)], files["front"]
            if name == HITS + "floor-page":
                return running["nocache"], files["floor-page"]
            if name == BADGE + "floor-page":
                return running[BADGE + "nocache"], files["floor-page"]
            if name.startswith(HITS):
                return running[name.removeprefix(HITS)], files["front"]
            if name.startswith(BADGE):
                return running[name], files["front"]
            if name.removeprefix(ASGI) == "floor":
                return running[name.replace("floor", "nocache")], files["floor"]
            return running[name], files["mix"]

        for name, server in running.items():
            if name.removeprefix(ASGI).removeprefix(BADGE) != "nocache":
                warm_variant(name, server, files["unique"], quick)
        for n in range(rounds):
            # Rotate the order each round so no variant always follows the same neighbour.
            order = names[n % len(names):] + names[: n % len(names)]
            for name in order:
                server, paths = target(name)
                assert server.proc is not None
                cpu = group_cpu(server.proc.pid)
                result = run_wrk(wrk, server.url, paths, seconds)
                result["server_cpu_s"] = group_cpu(server.proc.pid) - cpu
                result["round"] = n
                per_round[name].append(result)
                log(
                    f"throughput round {n + 1}/{rounds} {name}: {result['rps']:.0f} req/s, "
                    f"p50 {result['p50_us'] / 1000:.2f} ms, p99 {result['p99_us'] / 1000:.2f} ms"
                )
                time.sleep(0.5)

    def summaries(prefix: str, variants: list[str]) -> dict[str, Any]:
        return {v: summarize(per_round[prefix + v], LABELS[v]) for v in variants}

    summary, hits, asgi_summary, badge_summary = (
        summaries("", VARIANTS), summaries(HITS, HITS_VARIANTS), summaries(ASGI, ASGI_VARIANTS),
        summaries(BADGE, BADGE_VARIANTS),
    )
    asgi_hits = summaries(ASGI + HITS, ASGI_HITS_VARIANTS)
    mix = (f"{100 - round(FRONT_SHARE * 100)}% post pages (uniform over all posts), "
           f"{round(FRONT_SHARE * 100)}% front pages 1-{FRONT_PAGES}")
    return {
        "rounds": rounds,
        "seconds_per_run": seconds,
        "posts_in_mix": posts_in_mix,
        "warmup": "every URL once; for the memory store and the near cache "
                  f"{PER_WORKER['fc-near']} times, so each worker sees each page (the near "
                  f"cache's passes after a {NEAR_SETTLE:.0f} s pause: its channel must be "
                  "healthy)",
        "connections": CONNECTIONS,
        "workers": 2,
        "mix": mix,
        "variants": summary,
        "targets": ratios(summary, summary["nocache"], summary["floor"]),
        "hits": {
            "pages": f"front pages 1-{FRONT_PAGES}, uniformly",
            "variants": hits,
            "targets": ratios(hits, None, summary["floor"], (
                ("fc-near", "floor-page", 0.90), ("fc-early", "floor-page", 0.90),
            )),
        },
        "badge": {
            "pages": f"front pages 1-{FRONT_PAGES}, uniformly, with the example's cache badge",
            "variants": badge_summary,
            "targets": ratios(badge_summary, None, summary["floor"],
                              (("fc-near", "floor-page", 0.90),), standard=False),
        },
        "asgi": {
            "server": uvicorn_flavour(),
            "workers": 2,
            "variants": asgi_summary,
            "targets": ratios(asgi_summary, asgi_summary["nocache"], asgi_summary["floor"]),
            "hits": {
                "pages": f"front pages 1-{FRONT_PAGES}, uniformly",
                "variants": asgi_hits,
                "targets": ratios(asgi_hits, None, asgi_summary["floor"], (
                    ("fc-near", "floor-page", 0.90), ("fc-early", "floor-page", 0.90),
                )),
            },
        },
    }
