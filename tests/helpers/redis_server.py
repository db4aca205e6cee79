"""A throwaway ``redis-server`` on a free loopback port, started and stopped by PID.

Each fault test gets its own server, so killing, pausing or flushing it never disturbs the
shared Redis other tests use::

    with RedisServer() as server:
        server.kill()           # refused
        server.start()          # restarted on the same port (empty, or from server.save())
        server.pause()          # hung (SIGSTOP) ... server.resume()
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from types import TracebackType
from typing import Any

import redis

__all__ = ["RedisServer", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """``redis-server --port <free> --save '' --appendonly no`` in a temporary directory.

    ``persist=True`` keeps what :meth:`save` wrote (``dump.rdb`` in the directory) across
    :meth:`kill` / :meth:`start`, so a restart comes back with the old data.
    """

    def __init__(self, *extra: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.extra = extra
        self.dir = tempfile.mkdtemp(prefix="freshcache-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **options: Any) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, **options)

    def start(self, timeout: float = 10.0) -> None:
        assert self.proc is None, "already running"
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", self.dir,
                "--dbfilename", "dump.rdb",
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.client(socket_connect_timeout=0.2).ping():
                    return
            except redis.RedisError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited at start")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def save(self) -> None:
        """Write the dataset to ``dump.rdb``; the next :meth:`start` loads it."""
        self.client().save()

    def kill(self) -> None:
        """SIGKILL: connections are refused from now on (nothing saved since :meth:`save`)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # a stopped process dies only when resumed
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def pause(self) -> None:
        """SIGSTOP: the socket accepts connections and requests, and nothing answers."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
