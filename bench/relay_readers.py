"""The reader processes of the relay benchmark (``bench/relay_lag.py``), and what they read.

A reader is a Django process of its own (``python -m bench.relay_readers``) with or without its
own relay; it takes JSON commands on stdin and answers each with one JSON line on stdout:

  {"cmd": "warm", "expect": {pk: body}}   read until every value is a hit showing ``body``
  {"cmd": "watch", "pks": [...], "stop_file": path, "max_seconds": s}
                                          read round-robin, 1 ms apart, until the file exists;
                                          answer every read: [pk, t0_ns, t1_ns, value, hit]
  {"cmd": "quit"}
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import PYTHON, ROOT, django_env, setup_django

KEY_PREFIX = "fcrelay"


def cached_body() -> tuple[Callable[..., Any], list[int]]:
    """The cached function every process reads, and a counter of its computations."""
    from blog.models import Comment
    from freshcache import cached

    calls = [0]

    @cached(name="bench.relay_lag.body")
    def body(pk: int) -> str:
        calls[0] += 1
        return str(Comment.objects.values_list("body", flat=True).get(pk=pk))

    return body, calls


def reader() -> None:
    """A reader process: JSON commands on stdin, one JSON answer per command on stdout."""
    setup_django("fc-redis")
    body, _ = cached_body()
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "warm":  # until every value is a hit showing what is expected
            expect = {int(k): v for k, v in cmd["expect"].items()}
            deadline = time.monotonic() + 20
            ok = False
            while not ok and time.monotonic() < deadline:
                outcomes = [body.outcome(pk) for pk in expect]  # type: ignore[attr-defined]
                ok = all(o.hit and o.value == expect[pk] for pk, o in zip(expect, outcomes,
                                                                          strict=True))
                time.sleep(0.002)
            answer: dict[str, Any] = {"ok": ok}
        elif cmd["cmd"] == "watch":  # read round-robin until the stop file appears
            pks, stop = cmd["pks"], Path(cmd["stop_file"])
            deadline = time.monotonic() + cmd["max_seconds"]
            rows: list[list[Any]] = []
            n = 0
            while not stop.exists() and time.monotonic() < deadline:
                pk = pks[n % len(pks)]
                n += 1
                t0 = time.monotonic_ns()
                o = body.outcome(pk)  # type: ignore[attr-defined]
                rows.append([pk, t0, time.monotonic_ns(), o.value, o.hit])
                time.sleep(0.001)
            answer = {"rows": rows}
        else:
            return
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


class Reader:
    def __init__(self, name: str, relay: bool, store_url: str) -> None:
        self.name = name
        env = django_env("fc-redis", BENCH_FRESHCACHE=json.dumps(
            {"STORE": store_url, "KEY_PREFIX": KEY_PREFIX, "RELAY": relay}
        ))
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "bench.relay_readers"], cwd=ROOT, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )

    def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"reader {self.name} exited ({self.proc.poll()})")
        return dict(json.loads(line))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def warm(readers: list[Reader], expect: dict[int, str]) -> None:
    for r in readers:
        r.send(cmd="warm", expect=expect)
    for r in readers:
        if not r.answer()["ok"]:
            raise RuntimeError(f"reader {r.name} never got a fresh hit: {expect}")


if __name__ == "__main__":
    reader()
