"""A throwaway ``redis-server`` on a free loopback port, started, paused and stopped by PID.

The same idea as the test suite's ``tests/helpers/redis_server.py`` (bench/ imports from tests/
only the near cache's trial protocol, ``tests/helpers/near_trials.py``): the relay benchmark
pauses its own server with SIGSTOP, never the shared one.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from types import TracebackType
from typing import Any

from bench.common import free_port

__all__ = ["RedisServer"]


class RedisServer:
    """``redis-server --port <free> --save '' --appendonly no`` in a temporary directory."""

    def __init__(self, *extra: str) -> None:
        """``extra``: more ``redis-server`` arguments (``"--maxmemory", "20mb"``)."""
        self.extra = extra
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="fc-bench-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        import redis

        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if redis.Redis(port=self.port, socket_connect_timeout=0.2).ping():
                    return
            except redis.RedisError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def client(self) -> Any:
        import redis

        return redis.Redis(port=self.port, socket_timeout=5)

    def pause(self) -> None:
        """SIGSTOP: connections are still accepted, and nothing answers."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)  # a stopped process dies only once resumed
            proc.kill()
        proc.wait(10)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
