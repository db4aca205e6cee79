"""Real servers for the end-to-end tests: the example blog under gunicorn or uvicorn.

Everything runs in subprocesses started here and stopped here by process id: a PostgreSQL
database created for this run (``freshcache_e2e_<pid>``), ``manage.py migrate`` and
``seed_blog``, and the servers on free loopback ports. No server outlives its fixture.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

EXAMPLE = Path(__file__).resolve().parents[2] / "example"
PG = os.environ.get("FRESHCACHE_TEST_PG", "127.0.0.1:5432")
REDIS = os.environ.get("FRESHCACHE_TEST_REDIS", "redis://127.0.0.1:6379/15")
RUN = f"e2e{os.getpid()}"
DB_NAME = f"freshcache_{RUN}"
#: Redis database 14: not the suite's 15, and the keys carry this run's prefix.
REDIS_STORE = REDIS.rsplit("/", 1)[0] + f"/14?prefix={RUN}"
POSTS = 12
READY_SECONDS = 30.0


def _pg_connect(dbname: str):  # type: ignore[no-untyped-def]
    import psycopg

    host, _, port = PG.partition(":")
    return psycopg.connect(
        host=host, port=int(port or 5432), user="postgres", dbname=dbname, autocommit=True
    )


def blog_env(store: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        BLOG_DB="postgres",
        BLOG_PG_HOST=PG,
        BLOG_PG_NAME=DB_NAME,
        FRESHCACHE_STORE=store,
        DJANGO_DEBUG="0",
        DJANGO_SETTINGS_MODULE="mysite.settings",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


def manage(*args: str, store: str = "memory://", timeout: float = 120) -> str:
    """Run ``manage.py`` in a separate process on the e2e database; return its stdout."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=EXAMPLE,
        env=blog_env(store),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """Stop the server and every process it started (its own process group), by id."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        # gunicorn workers share the master's process group; none may linger.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


@dataclass
class Blog:
    """A running server and what the tests need to know about the seeded blog."""

    base: str
    store: str
    posts: list[tuple[int, str, str]]  # (pk, slug, title), by pk
    server: Server | None = None

    def log(self) -> str:
        """The end of the server's output (tracebacks of server errors), for failure messages."""
        return self.server.output() if self.server is not None else ""

    def url(self, path: str) -> str:
        return self.base + path


def gunicorn_argv(port: int, workers: int = 2, threads: int = 1) -> list[str]:
    """The command line of the example blog under gunicorn on ``port`` (sync workers)."""
    return [
        sys.executable, "-m", "gunicorn", "mysite.wsgi:application",
        "--workers", str(workers), "--threads", str(threads), "--bind", f"127.0.0.1:{port}",
        "--timeout", "30", "--graceful-timeout", "5", "--log-level", "warning",
    ]  # fmt: skip


def start_server(
    argv: list[str], store: str, port: int, env: dict[str, str] | None = None
) -> Server:
    """Start ``argv`` in the example directory with :func:`blog_env` (plus ``env``); wait until
    it answers ``/``."""
    log = Path(tempfile.mkstemp(prefix=f"{RUN}-server-", suffix=".log")[1])
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            cwd=EXAMPLE,
            env=blog_env(store, env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() reaches the workers
        )
    server = Server(process, log)
    deadline = time.monotonic() + READY_SECONDS
    try:
        while True:
            if process.poll() is not None:
                raise AssertionError(f"server exited early:\n{server.output()}")
            try:
                if requests.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                    return server
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server not ready in {READY_SECONDS}s:\n{server.output()}")
            time.sleep(0.2)
    except BaseException:
        server.stop()
        raise


def current_posts() -> list[tuple[int, str, str]]:
    """(pk, slug, title) of every post, by pk, as the database holds them now.

    ``Blog.posts`` are the posts as seeded; tests that edit titles (``test_workers.py``) change
    them, and a module that runs later in the same process (any order, under pytest-xdist) must
    read them here."""
    with _pg_connect(DB_NAME) as conn:
        posts = conn.execute("SELECT id, slug, title FROM blog_post ORDER BY id").fetchall()
    return [(int(pk), str(slug), str(title)) for pk, slug, title in posts]


@pytest.fixture(scope="session")
def blog_db() -> Iterator[list[tuple[int, str, str]]]:
    """A PostgreSQL database of this run, migrated and seeded; dropped afterwards."""
    with _pg_connect("postgres") as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}"')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    try:
        manage("migrate", "--noinput", "-v", "0")
        manage("seed_blog", "--posts", str(POSTS), "--comments-per-post", "3")
        yield current_posts()
    finally:
        with _pg_connect("postgres") as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


def clear_redis_prefix() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_STORE.split("?", 1)[0], socket_timeout=2)
    try:
        for _ in range(100):  # bounded: at most 100 rounds of 1000 keys
            keys = list(itertools.islice(client.scan_iter(match=f"*{RUN}*"), 1000))
            if not keys:
                break
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("redis", marks=[pytest.mark.postgres, pytest.mark.redis]),
        pytest.param("database", marks=[pytest.mark.postgres]),
    ],
)
def gunicorn_blog(
    request: pytest.FixtureRequest, blog_db: list[tuple[int, str, str]]
) -> Iterator[Blog]:
    """The blog under gunicorn, 2 sync worker processes, on the Redis or the database store."""
    store = REDIS_STORE if request.param == "redis" else "database://"
    port = free_port()
    server = start_server(gunicorn_argv(port), store, port)
    try:
        yield Blog(f"http://127.0.0.1:{port}", store, blog_db, server)
    finally:
        server.stop()
        if request.param == "redis":
            clear_redis_prefix()


@pytest.fixture(scope="module")
def uvicorn_blog(blog_db: list[tuple[int, str, str]]) -> Iterator[Blog]:
    """The blog under uvicorn (ASGI), one process, the in-process store."""
    port = free_port()
    argv = [
        sys.executable, "-m", "uvicorn", "mysite.asgi:application",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    server = start_server(argv, "memory://", port)
    try:
        yield Blog(f"http://127.0.0.1:{port}", "memory://", blog_db, server)
    finally:
        server.stop()
