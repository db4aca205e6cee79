"""The edge (issue 12): the blog's front page as a hit from Django, through Varnish and as a
static file served by nginx, side by side; and the purge lag of a write, through each.

One gunicorn (2 sync workers, the Redis store, as bench/throughput.py) runs the blog with
``EDGE``: keys for Varnish, the Varnish purger pointed at a varnishd, static publishing of
``/`` and ``/post/`` into a temporary root. In front of it: varnishd with the VCL of
tests/edge/varnish.vcl (xkey; pages with keys kept until purged), and nginx with the server block
of tests/edge/nginx.conf (the published file, else Django). A second gunicorn, freshcache off,
serves the constant view (the floor) as in throughput.py.

**Hits**: wrk (1 thread, 16 connections, a new connection per request as throughput.py) on
``/`` through each of: gunicorn (a freshcache hit), varnishd (a Varnish hit), nginx (the
published file), and on ``/floor/`` (the constant view) and ``/floor/page/`` (the front page's
bytes as a constant view), in rounds interleaved in rotating order.

**Purge lag**: a writer process (``python -m bench.edge writer``, the server's settings) updates
the title of the newest post, shown on the front page, N times, spaced. After each write returns
it reads ``/`` through the edge in a loop until the body shows the new title:

* Varnish: the time from the write's return to the end of the first response through Varnish
  with the new title. That is the purge lag (relay, queue, worker, ``PURGE``), plus the poll's
  granularity (one hit through Varnish, well under a millisecond) and the miss that refetches the
  page from Django (reported apart: the duration of that first new response).
* nginx: whether the page's file was gone (or already new) at the first look after the write
  returned (the writer deletes it before returning: the lag is 0 by construction), the time of
  that look, and the time until the first new response through nginx (a miss through Django,
  which publishes the file again).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench import common
from bench.common import BENCH, PG_NAME, RESULTS, ROOT, Server, free_port, log, percentile, psql
from bench.throughput import CONNECTIONS, ensure_wrk, group_cpu, summarize

VCL = ROOT / "tests" / "edge" / "varnish.vcl"
NGINX_SERVER = ROOT / "tests" / "edge" / "nginx.conf"
XKEY = Path("/usr/lib/x86_64-linux-gnu/varnish/vmods/libvmod_xkey.so")
#: The purger's settle purge: the documented default (docs/edge.md, Purgers).
SETTLE = 2.0

VARIANTS = ["django", "varnish", "nginx", "varnish-ka", "nginx-ka", "floor", "floor-page"]
#: Run with keep-alive connections (the others: a new connection per request, as throughput.py:
#: gunicorn's sync workers close every connection anyway).
KEEP_ALIVE = {"varnish-ka", "nginx-ka"}
LABELS = {
    "django": "freshcache hit from gunicorn (Redis)",
    "varnish": "Varnish hit (xkey), in front of it",
    "nginx": "nginx, the published file",
    "varnish-ka": "Varnish hit, keep-alive",
    "nginx-ka": "nginx, the published file, keep-alive",
    "floor": "floor (constant view)",
    "floor-page": "floor (the front page as a constant)",
}
#: (numerator, denominator, target or None).
RATIOS: list[tuple[str, str, float | None]] = [
    ("nginx", "floor", 10.0),
    ("nginx-ka", "floor", 10.0),
    ("varnish-ka", "floor", None),
    ("varnish", "floor", None),
    ("varnish", "django", None),
    ("nginx", "django", None),
    ("nginx", "varnish", None),
    ("django", "floor", None),
]


def edge_settings(varnish_port: int, root: Path) -> dict[str, Any]:
    """``FRESHCACHE["EDGE"]`` of the server and the writer (``BENCH_FRESHCACHE``)."""
    return {
        "EDGE": {
            "KEYS": ["varnish"],
            "PURGERS": [{
                "BACKEND": "freshcache.edge.purgers.Varnish",
                "URLS": [f"http://127.0.0.1:{varnish_port}/"],
                "SETTLE": SETTLE,
            }],
            "PUBLISH": {"ROOT": str(root), "URLS": [r"^/$", r"^/post/"]},
        }
    }


def _wait_for(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited ({process.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not start in 20 s")


@contextmanager
def _process(cmd: list[str], port: int, what: str, log_path: Path) -> Iterator[int]:
    """Start ``cmd`` in a session of its own; stop its process group by PID, whatever happens."""
    with log_path.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        _wait_for(port, proc, what)
        yield proc.pid
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


@contextmanager
def varnishd(port: int, backend: int, work: Path) -> Iterator[int]:
    """tests/edge/varnish.vcl in front of ``backend`` (as tests/edge/conftest.py)."""
    binary = shutil.which("varnishd") or "/usr/sbin/varnishd"
    if not (os.path.exists(binary) and XKEY.exists()):
        raise RuntimeError("varnishd with xkey is missing: apt-get install varnish varnish-modules")
    vcl = work / "freshcache.vcl"
    vcl.write_text(VCL.read_text().replace('.port = "8000";', f'.port = "{backend}";'))
    cmd = [binary, "-F", "-j", "none", "-n", str(work / "varnish"), "-a", f"127.0.0.1:{port}",
           "-f", str(vcl), "-s", "malloc,64m", "-T", "none"]  # fmt: skip
    with _process(cmd, port, "varnishd", RESULTS / ".varnishd.log") as pid:
        yield pid


@contextmanager
def nginx(port: int, backend: int, root: Path, work: Path) -> Iterator[int]:
    """tests/edge/nginx.conf's server block (as tests/edge/conftest.py), 2 worker processes."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(binary):
        raise RuntimeError("nginx is missing: apt-get install nginx-light")
    server = (
        NGINX_SERVER.read_text()
        .replace("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{port};")
        .replace("root /srv/www/published;", f"root {root};")
        .replace("http://127.0.0.1:8000;", f"http://127.0.0.1:{backend};")
    )
    work = work / "nginx"
    work.mkdir()
    temps = " ".join(f"{name}_temp_path {work / name};"
                     for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))  # fmt: skip
    # As root, nginx's workers would run as nobody, who cannot enter the private temp directory.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = work / "nginx.conf"
    conf.write_text(
        f"{user}daemon off;\nworker_processes 2;\npid {work / 'nginx.pid'};\n"
        f"error_log {work / 'error.log'};\nevents {{}}\n"
        f"http {{\naccess_log off;\n{temps}\n{server}\n}}\n"
    )
    with _process([binary, "-c", str(conf), "-p", str(work)], port, "nginx",
                  RESULTS / ".nginx.log") as pid:  # fmt: skip
        yield pid


def _get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def _ratios(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for a, b, target in RATIOS:
        per_round = sorted(
            x["rps"] / y["rps"]
            for x, y in zip(summary[a]["rounds"], summary[b]["rounds"], strict=True)
        )
        out.append({
            "ratio": f"{a} / {b}",
            "value": summary[a]["rps"] / summary[b]["rps"],
            "round_median": per_round[len(per_round) // 2],
            "round_range": [per_round[0], per_round[-1]],
            "target": target,
            # What each request cost the server's processes, b over a: less at the mercy of the
            # machine's load than requests/s (but blind to the kernel's and wrk's share).
            "cpu_per_request_b_over_a": (
                summary[b]["cpu_ms_per_request"] / summary[a]["cpu_ms_per_request"]
            ),
        })
    return out


def run_wrk(wrk: str, url: str, paths: Path, seconds: float, keep_alive: bool) -> dict[str, Any]:
    """throughput.py's wrk run (1 thread, 16 connections, bench/wrk_mix.lua), with keep-alive
    connections when asked."""
    env = {"WRK_PATHS": str(paths), "PATH": "/usr/bin:/bin"}
    close = [] if keep_alive else ["-H", "Connection: close"]
    out = subprocess.run(
        [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
         *close, "-s", str(BENCH / "wrk_mix.lua"), url],
        capture_output=True, text=True, env=env, timeout=seconds + 60, check=False,
    )
    for line in out.stdout.splitlines():
        if line.startswith("WRKJSON "):
            result: dict[str, Any] = json.loads(line[len("WRKJSON "):])
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            return result
    raise RuntimeError(f"wrk printed no result:\n{out.stdout}\n{out.stderr}")


def _dist(values_s: list[float]) -> dict[str, Any]:
    ms = [v * 1000 for v in values_s]
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms), "p50": percentile(ms, 50), "p90": percentile(ms, 90),
        "p99": percentile(ms, 99), "max": max(ms), "min": min(ms),
    }


def run(quick: bool) -> dict[str, Any]:
    wrk = ensure_wrk()
    rounds, seconds = (2, 3) if quick else (4, 5)
    writes = 40 if quick else 200
    pk, title = psql("SELECT id, title FROM blog_post ORDER BY published_at DESC, id DESC LIMIT 1",
                     PG_NAME).split("|", 1)  # fmt: skip
    per_round: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="fc-edgebench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        root = work / "published"
        root.mkdir()
        varnish_port, nginx_port = free_port(), free_port()
        extra = {"BENCH_FRESHCACHE": json.dumps(edge_settings(varnish_port, root))}
        app = Server("fc-redis", env=extra)
        floor = Server("nocache")
        for server in (app, floor):
            stack.callback(server.stop)
            server.start()
        varnish_pid = stack.enter_context(varnishd(varnish_port, app.port, work))
        nginx_pid = stack.enter_context(nginx(nginx_port, app.port, root, work))

        # Pre-render the page as a site would (and warm the store: the publish stores it).
        published = json.loads(common.manage("fc-redis", "freshcache", "publish", "/", "--json",
                                      **extra))  # fmt: skip
        log(f"edge: manage.py freshcache publish /: {published}")
        if not (root / "index.html").exists():
            raise RuntimeError(f"/ was not published: {published}")
        for _ in range(4):  # both workers (and Varnish) see the page
            _get(app.port, "/")
            _get(varnish_port, "/")
        status, headers, body = _get(varnish_port, "/")
        if status != 200 or len(headers.get("x-varnish", "").split()) != 2:
            raise RuntimeError(f"Varnish did not serve / from its cache: {status} {headers}")
        status, headers, nbody = _get(nginx_port, "/")
        if status != 200 or "accept-ranges" not in headers or "x-frame-options" in headers:
            raise RuntimeError(f"nginx did not serve the published file: {status} {headers}")
        sizes = {"django": len(_get(app.port, "/")[2]), "varnish": len(body), "nginx": len(nbody),
                 "floor": len(_get(floor.port, "/floor/")[2]),
                 "floor-page": len(_get(floor.port, "/floor/page/")[2])}  # fmt: skip

        paths = {"page": work / "page.txt", "floor": work / "floor.txt",
                 "floor-page": work / "floor-page.txt"}  # fmt: skip
        paths["page"].write_text("/\n")
        paths["floor"].write_text("/floor/\n")
        paths["floor-page"].write_text("/floor/page/\n")
        # CPU by process group: the gunicorn (master and workers), varnishd (manager and
        # child), nginx (master and workers), each started in a session of its own.
        targets = {
            "django": (app.port, paths["page"], app.proc.pid if app.proc else 0),
            "varnish": (varnish_port, paths["page"], varnish_pid),
            "nginx": (nginx_port, paths["page"], nginx_pid),
            "varnish-ka": (varnish_port, paths["page"], varnish_pid),
            "nginx-ka": (nginx_port, paths["page"], nginx_pid),
            "floor": (floor.port, paths["floor"], floor.proc.pid if floor.proc else 0),
            "floor-page": (floor.port, paths["floor-page"], floor.proc.pid if floor.proc else 0),
        }
        for n in range(rounds):
            order = VARIANTS[n % len(VARIANTS):] + VARIANTS[: n % len(VARIANTS)]
            for name in order:
                port, path_file, pgid = targets[name]
                cpu = group_cpu(pgid) if pgid else 0.0
                result = run_wrk(wrk, f"http://127.0.0.1:{port}", path_file, seconds,
                                 name in KEEP_ALIVE)  # fmt: skip
                result["server_cpu_s"] = (group_cpu(pgid) - cpu) if pgid else 0.0
                result["round"] = n
                per_round[name].append(result)
                log(f"edge round {n + 1}/{rounds} {name}: {result['rps']:.0f} req/s, "
                    f"p50 {result['p50_us'] / 1000:.2f} ms, p99 {result['p99_us'] / 1000:.2f} ms")
                time.sleep(0.5)
        # Still served from the edge after the runs (nothing wrote meanwhile).
        status, headers, _ = _get(varnish_port, "/")
        varnish_hit_after = len(headers.get("x-varnish", "").split()) == 2
        file_after = (root / "index.html").exists()

        log(f"edge: purge lag, {writes} writes through Varnish, then {writes} with nginx")
        lag = {}
        for mode, port in (("varnish", varnish_port), ("nginx", nginx_port)):
            lag[mode] = writer(mode, writes, port, root, int(pk), extra)
            log(f"edge: {mode} lag " + json.dumps({k: v for k, v in lag[mode].items()
                                                   if isinstance(v, dict)}))  # fmt: skip
        psql(f"UPDATE blog_post SET title = '{title.replace(chr(39), chr(39) * 2)}' "
             f"WHERE id = {int(pk)}", PG_NAME)  # fmt: skip

    summary = {v: summarize(per_round[v], LABELS[v]) for v in VARIANTS}
    for v, r in summary.items():
        r["vs_floor"] = r["rps"] / summary["floor"]["rps"]
        r["body_bytes"] = sizes[v.removesuffix("-ka")]
        r["keep_alive"] = v in KEEP_ALIVE
    return {
        "rounds": rounds,
        "seconds_per_run": seconds,
        "connections": CONNECTIONS,
        "workers": 2,
        "nginx_workers": 2,
        "page": "/ (the blog's front page)",
        "variants": summary,
        "ratios": _ratios(summary),
        "varnish_hit_after_runs": varnish_hit_after,
        "file_after_runs": file_after,
        "settle": SETTLE,
        "lag": lag,
    }


def writer(mode: str, writes: int, port: int, root: Path, pk: int,
           extra: dict[str, str]) -> dict[str, Any]:  # fmt: skip
    out = subprocess.run(
        [common.PYTHON, "-m", "bench.edge", "writer", mode, str(writes), str(port), str(root),
         str(pk)],
        cwd=ROOT, env=common.django_env("fc-redis", **extra), capture_output=True, text=True,
        timeout=600, check=False,
    )
    sys.stderr.write(out.stderr[-3000:])
    if out.returncode:
        raise RuntimeError(f"the {mode} writer failed ({out.returncode})")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def write_loop(mode: str, writes: int, port: int, root: Path, pk: int) -> dict[str, Any]:
    """In the writer process (Django set up with the server's settings)."""
    import http.client

    from blog.models import Post

    page = root / "index.html"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get() -> tuple[bytes, str]:
        nonlocal conn
        try:
            conn.request("GET", "/")
            response = conn.getresponse()
            return response.read(), response.getheader("X-Varnish") or ""
        except (http.client.HTTPException, OSError):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/")
            response = conn.getresponse()
            return response.read(), response.getheader("X-Varnish") or ""

    lags, misses, waits, looks, polls = [], [], [], [], []
    gone_at_first_look = 0
    file_before = 0
    varnish_hit_before = 0
    timeouts = 0
    for i in range(1, writes + 1):
        new = f"Edge bench write {i} end".encode()
        if mode == "nginx":
            for _ in range(50):  # the file is there before the write (a hit republishes it)
                if page.exists():
                    break
                get()
                time.sleep(0.01)
            file_before += page.exists()
        else:
            body, xv = get()
            varnish_hit_before += len(xv.split()) == 2
        Post.objects.filter(pk=pk).update(title=new.decode())
        returned = time.perf_counter()
        if mode == "nginx":
            try:
                fresh = new in page.read_bytes()
            except FileNotFoundError:
                fresh = True
            looks.append(time.perf_counter() - returned)
            gone_at_first_look += fresh
        n = 0
        while True:
            n += 1
            started = time.perf_counter()
            body, _ = get()
            done = time.perf_counter()
            if new in body:
                break
            if done - returned > 30:
                timeouts += 1
                break
            time.sleep(0.0005)
        polls.append(n)
        lags.append(done - returned)
        waits.append(started - returned)
        misses.append(done - started)
        time.sleep(random.uniform(0.02, 0.08))
    conn.close()
    result: dict[str, Any] = {
        "writes": writes,
        "until_new_read": _dist(lags),
        "until_that_read_began": _dist(waits),
        "that_read": _dist(misses),
        "polls_median": sorted(polls)[len(polls) // 2],
        "timeouts": timeouts,
    }
    if mode == "nginx":
        result["file_before_write"] = file_before
        result["gone_or_new_at_first_look"] = gone_at_first_look
        result["first_look"] = _dist(looks)
    else:
        result["varnish_hit_before_write"] = varnish_hit_before
    return result


if __name__ == "__main__" and sys.argv[1:2] == ["writer"]:
    import django

    sys.path.insert(0, str(ROOT / "example"))
    django.setup()
    _, _, mode_, n_, port_, root_, pk_ = sys.argv
    print(json.dumps(write_loop(mode_, int(n_), int(port_), Path(root_), int(pk_))))
