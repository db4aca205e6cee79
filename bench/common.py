"""Shared plumbing for the benchmarks: paths, the bench database, servers started by PID."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example"
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
PYTHON = sys.executable
PG_NAME = os.environ.get("BENCH_PG_NAME", "freshcache_bench")
PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379")
REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "12"))

#: The blog the benchmarks run on: a few hundred posts, thousands of comments.
POSTS = 300
COMMENTS_PER_POST = 15


def django_env(variant: str, **extra: str) -> dict[str, str]:
    """The environment of a Django process (server, writer, in-process bench) for ``variant``."""
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT), str(EXAMPLE), str(ROOT / "src")]),
        DJANGO_SETTINGS_MODULE="bench.site.settings",
        BENCH_VARIANT=variant,
        BENCH_PG_NAME=PG_NAME,
        BENCH_PG_HOST=PG_HOST,
        BENCH_REDIS=REDIS,
        BENCH_REDIS_DB=str(REDIS_DB),
        PYTHONHASHSEED="0",
    )
    env.update(extra)
    return env


def setup_django(variant: str) -> None:
    """Configure Django in this process for ``variant`` (for in-process benchmarks)."""
    for key, value in django_env(variant).items():
        os.environ[key] = value
    for path in (str(ROOT), str(EXAMPLE)):
        if path not in sys.path:
            sys.path.insert(0, path)
    import django

    django.setup()


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def manage(variant: str, *args: str, timeout: float = 300, **extra: str) -> str:
    out = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=EXAMPLE,
        env=django_env(variant, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if out.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def psql(sql: str, database: str = "postgres") -> str:
    host, _, port = PG_HOST.partition(":")
    out = subprocess.run(
        ["psql", "-h", host, "-p", port or "5432", "-U", "postgres", "-d", database,
         "-v", "ON_ERROR_STOP=1", "-tAc", sql],
        capture_output=True, text=True, timeout=120, check=False,
    )
    if out.returncode:
        raise RuntimeError(f"psql failed: {sql}\n{out.stderr}")
    return out.stdout.strip()


def redis_client(db: int) -> Any:
    import redis

    return redis.Redis.from_url(f"{REDIS}/{db}")


def fresh_blog() -> None:
    """(Re)create the bench database and Redis databases, migrate, seed the blog, then install
    freshcache's log triggers (as an existing site upgrading would).

    Migrate and seed run with the invalidation log off: nothing is cached yet, so there is
    nothing to log (4,500 seeded rows would only wait for a relay), and installing the triggers
    on a populated database is the path of a site upgrading to the log.
    """
    psql(f'DROP DATABASE IF EXISTS "{PG_NAME}" WITH (FORCE)')
    psql(f'CREATE DATABASE "{PG_NAME}"')
    for db in (REDIS_DB, REDIS_DB + 1):
        redis_client(db).flushdb()
    no_log = {"BENCH_FRESHCACHE": json.dumps({"LOG_DATABASE": None})}
    manage("nocache", "migrate", "--noinput", "-v0", **no_log)
    manage(
        "nocache", "seed_blog", "--posts", str(POSTS),
        "--comments-per-post", str(COMMENTS_PER_POST), **no_log,
    )
    manage("nocache", "freshcache", "changefeed", "install")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A server for the blog of one variant on a loopback port: gunicorn (WSGI, 2 sync workers
    unless told otherwise) or, with ``asgi``, uvicorn (ASGI, ``bench/site/asgi.py``)."""

    def __init__(
        self,
        variant: str,
        workers: int = 2,
        env: dict[str, str] | None = None,
        threads: int = 1,
        asgi: bool = False,
    ) -> None:
        self.variant = variant
        self.threads = threads
        self.env = env or {}
        self.workers = workers
        self.asgi = asgi
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = RESULTS / f".server-{variant}{'-asgi' if asgi else ''}.log"

    def command(self) -> list[str]:
        """The server's command line."""
        if self.asgi:
            # uvicorn's own process manager; lifespan off: Django speaks no lifespan protocol.
            return [
                PYTHON, "-m", "uvicorn", "bench.site.asgi:application",
                "--host", "127.0.0.1", "--port", str(self.port),
                "--workers", str(self.workers),
                "--lifespan", "off",
                "--no-access-log",
                "--log-level", "warning",
                "--backlog", "2048",
                "--timeout-graceful-shutdown", "5",
            ]
        return [
            PYTHON, "-m", "gunicorn", "bench.site.wsgi:application",
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(self.workers),
            "--worker-class", "sync" if self.threads == 1 else "gthread",
            "--threads", str(self.threads),
            "--backlog", "2048",
            "--timeout", "60",
            "--graceful-timeout", "5",
        ]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        logfile = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.command(),
            cwd=EXAMPLE,
            env=django_env(self.variant, **self.env),
            stdout=logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        logfile.close()
        deadline = time.monotonic() + timeout
        import urllib.request

        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server for {self.variant} exited: see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + "/floor/", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the server for {self.variant} did not answer in {timeout}s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        # The server's master (gunicorn's arbiter, uvicorn's supervisor) is the session leader
        # we started; signal only its process group.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextmanager
def servers(
    variants: list[str], env: dict[str, str] | None = None, asgi: bool = False
) -> Iterator[dict[str, Server]]:
    """Start one server per variant (uvicorn with ``asgi``, else gunicorn); stop every one of
    them, whatever happens."""
    started: dict[str, Server] = {}
    try:
        for variant in variants:
            server = Server(variant, env=env, asgi=asgi)
            started[variant] = server
            server.start()
        yield started
    finally:
        for server in started.values():
            server.stop()


def write_json(name: str, data: Any) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)
