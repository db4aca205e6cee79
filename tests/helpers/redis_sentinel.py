"""A Redis primary, its replica and three sentinels on free loopback ports, stopped by PID.

docs/scaling.md's Sentinel setup, small: quorum 2, a master declared down after 300 ms::

    with SentinelSetup() as setup:
        store_url = setup.url()                  # redis+sentinel://127.0.0.1:p1,…/fc-test/0
        setup.lose_next_writes()                 # the replica stops hearing from the master
        ...                                      # bumps the replica will never have
        setup.fail_over()                        # master killed; returns once replaced
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

from .redis_server import RedisServer, free_port

__all__ = ["SERVICE", "SentinelSetup"]

#: The master's name in the sentinels' configuration (``sentinel monitor``).
SERVICE = "fc-test"
DOWN_AFTER_MS = 300


class SentinelSetup:
    """One primary, one replica, three sentinels; every process is this object's to stop."""

    def __init__(self) -> None:
        self.primary = RedisServer()
        self.replica = RedisServer("--replicaof", "127.0.0.1", str(self.primary.port))
        self.dir = Path(tempfile.mkdtemp(prefix="freshcache-sentinel-"))
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    def url(self, db: int = 0, query: str = "") -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/{db}" + (f"?{query}" if query else "")

    def sentinel(self, index: int = 0) -> redis.Redis:
        port = self.sentinel_ports[index]
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)

    def master_port(self, index: int = 0) -> int | None:
        """The master's port as sentinel ``index`` names it (None while it names none)."""
        try:
            address = self.sentinel(index).sentinel_get_master_addr_by_name(SERVICE)
        except redis.RedisError:
            return None
        return int(address[1]) if address else None

    def start(self, timeout: float = 30.0) -> None:
        self.primary.start()
        self.replica.start()
        for index, port in enumerate(self.sentinel_ports):
            conf = self.dir / f"sentinel-{index}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} 3000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            self.sentinels.append(
                subprocess.Popen(
                    [shutil.which("redis-server") or "redis-server", str(conf), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        # Ready when each sentinel knows the replica and the two other sentinels, and the
        # replica is in sync: before that, a failover could not pick it.
        deadline = time.monotonic() + timeout
        while not self._ready():
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the sentinels did not discover the replica and each other")
            time.sleep(0.1)

    def _ready(self) -> bool:
        try:
            for index in range(3):
                sentinel = self.sentinel(index)
                if len(sentinel.sentinel_slaves(SERVICE)) != 1:
                    return False
                if len(sentinel.sentinel_sentinels(SERVICE)) != 2:
                    return False
            return self.replica.client().info("replication").get("master_link_status") == "up"
        except redis.RedisError:
            return False

    def sync(self) -> None:
        """Wait until the replica has everything the primary acknowledged (``WAIT 1``)."""
        assert self.primary.client().execute_command("WAIT", 1, 5000) == 1

    def lose_next_writes(self) -> None:
        """From now on, what the primary acknowledges never reaches the replica: the replica is
        stopped (SIGSTOP) and the primary drops its link (``CLIENT KILL TYPE replica``), so
        nothing more is sent, not even into the socket. :meth:`fail_over` resumes it."""
        self.sync()
        self.replica.pause()
        self.primary.client().execute_command("CLIENT", "KILL", "TYPE", "replica")

    def fail_over(self, timeout: float = 30.0) -> None:
        """Kill the primary (SIGKILL), resume the replica, and wait until every sentinel names
        the replica as the master and it answers as one."""
        old = self.primary.port
        self.primary.kill()
        self.replica.resume()
        deadline = time.monotonic() + timeout
        while True:
            named = [self.master_port(index) for index in range(3)]
            try:
                role = self.replica.client().info("replication").get("role")
            except redis.RedisError:
                role = None
            if all(port == self.replica.port for port in named) and role == "master":
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"no failover from {old}: sentinels name {named}, role {role}")
            time.sleep(0.05)

    def stop(self) -> None:
        for proc in self.sentinels:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        self.sentinels = []
        for server in (self.replica, self.primary):
            server.kill()
            shutil.rmtree(server.dir, ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> SentinelSetup:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
