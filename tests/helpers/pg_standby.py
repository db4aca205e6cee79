"""A throwaway PostgreSQL primary and its streaming standby on free loopback ports.

Both clusters are new (``initdb``, then ``pg_basebackup -R`` of the primary), owned by the
``postgres`` user (PostgreSQL refuses to run as root), with ``fsync`` off, and stopped by PID::

    with Standby() as pg:
        pg.primary_port, pg.standby_port
        pg.sql(pg.standby_port, "SELECT pg_wal_replay_pause()")
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.helpers.redis_server import free_port

__all__ = ["Standby", "binaries", "child", "started"]

ROOT = Path(__file__).resolve().parents[2]


def binaries() -> Path | None:
    """The directory of ``initdb``/``pg_ctl``/``pg_basebackup`` of the newest PostgreSQL."""
    root = Path("/usr/lib/postgresql")
    found = [p for p in root.glob("*/bin") if (p / "initdb").exists()]
    versions = sorted(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return versions[-1] if versions else None


class Standby:
    def __init__(self) -> None:
        bindir = binaries()
        if bindir is None:
            raise RuntimeError("PostgreSQL's server binaries are not installed")
        self.bin = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="freshcache-pg-"))
        self.primary_port = free_port()
        self.standby_port = free_port()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None

    def _run(self, *cmd: str) -> None:
        out = subprocess.run(self._as_postgres(cmd), capture_output=True, text=True, timeout=120)
        if out.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")

    def _as_postgres(self, cmd: tuple[str, ...] | list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd] if self.user else list(cmd)

    def _start(self, data: Path, port: int) -> None:
        options = ["listen_addresses=127.0.0.1", f"unix_socket_directories={self.dir}",
                   "fsync=off", "full_page_writes=off"]  # fmt: skip
        command = [str(self.bin / "postgres"), "-D", str(data), "-p", str(port)]
        for option in options:
            command += ["-c", option]
        proc = subprocess.Popen(
            command,
            user="postgres" if self.user else None,  # its own PID: signals reach postgres itself
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / f"pg-{port}.log", "wb"),  # noqa: SIM115
        )
        self.procs.append(proc)
        deadline = time.monotonic() + 30
        while True:
            ready = subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p",
                                    str(port), "-q"], check=False)  # fmt: skip
            if ready.returncode == 0:
                return
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (self.dir / f"pg-{port}.log").read_text(errors="replace")
                raise RuntimeError(f"postgres on port {port} did not start:\n{log[-2000:]}")
            time.sleep(0.1)

    def start(self) -> None:
        if self.user:
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        primary, standby = self.dir / "primary", self.dir / "standby"
        self._run(str(self.bin / "initdb"), "-D", str(primary), "-A", "trust", "-U", "postgres",
                  "--no-sync")  # fmt: skip
        self._start(primary, self.primary_port)
        self._run(str(self.bin / "pg_basebackup"), "-h", "127.0.0.1", "-p",
                  str(self.primary_port), "-U", "postgres", "-D", str(standby), "-R",
                  "-X", "stream", "--no-sync")  # fmt: skip
        self._start(standby, self.standby_port)

    def sql(self, port: int, statement: str) -> str:
        out = subprocess.run(
            [shutil.which("psql") or "psql", "-h", "127.0.0.1", "-p", str(port),
             "-U", "postgres", "-d", "postgres", "-tAc", statement],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        if out.returncode:
            raise RuntimeError(f"psql failed: {statement}\n{out.stderr}")
        return out.stdout.strip()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # fast shutdown
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Standby:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def started() -> Iterator[Standby]:
    """A running primary and standby for a test module's fixture; skipped where PostgreSQL's
    server binaries are missing (failed in CI, which never skips service tests)."""
    import pytest

    if binaries() is None:
        why = "PostgreSQL's server binaries (initdb, pg_basebackup) are not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(why + "; CI never skips service tests")
        pytest.skip(why)
    with Standby() as pg:
        yield pg


def child(pg: Standby, module: str, settings: str, mode: str) -> dict[str, Any]:
    """Run ``python -m module mode`` with Django ``settings`` pointed at ``pg``; return the
    JSON object it printed last."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": settings,
        "FRESHCACHE_REPLICA_PORTS": f"{pg.primary_port},{pg.standby_port}",
        "PYTHONPATH": os.pathsep.join(str(p) for p in (ROOT / "src", ROOT, ROOT / "example")),
    }
    out = subprocess.run([sys.executable, "-m", module, mode], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=180)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result
