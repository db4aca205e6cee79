"""The invalidation log and its relay: misses per write, lag after an outage, outside writes.

Run in its own process (``python -m bench.relay_lag [--quick]``), under the ``fc-redis``
settings but on a throwaway ``redis-server`` it starts on a free port (so it can be paused),
with two reader processes started by PID (``bench/relay_readers.py``):

  R1  a process with its own relay (``RELAY: True``, the default: every web process has one)
  R2  a process without one (``RELAY: False``: it relies on the other processes' relays)

All three processes read one ``@cached`` function, the body of a comment by primary key (so a
value depends on exactly that row). Readers pause 1 ms between reads, like a busy web worker,
and record ``time.monotonic_ns()`` (system-wide on Linux) before and after every read, the value
and whether it was a hit.

1. **Misses per write** (this process): a write to the row, then reads every 2 ms until the
   relays have pruned the log (at least 150 ms); the number of recomputations the write caused.
   Writes: ``save()``, ``QuerySet.update()``, and (relay on only) an ``UPDATE`` through a
   psycopg connection outside Django. Variants: the relay off (``RELAY: False``, no other relay),
   the in-process relay, and the in-process relay racing a ``manage.py freshcache relay``.
   The contract: one recomputation per write, with or without the log.
2. **Lag after an outage**: SIGSTOP the Redis server; K ``save()`` calls whose bumps fail;
   SIGCONT. From SIGCONT: how long reads of the K values kept being stale in R1 and R2 (0 if no
   read after SIGCONT was stale), until the log was empty, and until every value was a fresh
   *hit* again. A read is stale if it started after the write returned and shows the old body.
3. **Outside-write lag**: ``UPDATE blog_comment`` through a psycopg connection (not Django's),
   autocommit, 100-200 ms apart, while R1 and R2 read the value: from the commit's return to the
   end of the first read showing the new body, and the stale reads after the commit.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.common import EXAMPLE, PYTHON, django_env, percentile, setup_django
from bench.relay_readers import KEY_PREFIX, Reader, cached_body, warm
from bench.throwaway_redis import RedisServer


def side_connection() -> Any:
    """A psycopg connection outside Django (autocommit): outside writes, the log's size."""
    import psycopg
    from django.db import connection

    params = connection.get_connection_params()
    for key in ("cursor_factory", "context", "prepare_threshold", "server_side_binding"):
        params.pop(key, None)
    return psycopg.connect(**params, autocommit=True)


def log_rows(side: Any) -> int:
    return int(side.execute("SELECT count(*) FROM freshcache_log").fetchone()[0])


def wait_log_empty(side: Any, timeout: float = 20.0) -> int:
    """Poll the log every 2 ms until it is empty; return monotonic_ns at that moment."""
    deadline = time.monotonic() + timeout
    while log_rows(side):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the invalidation log was not empty after {timeout}s")
        time.sleep(0.002)
    return time.monotonic_ns()


# -- 1. misses per write ----------------------------------------------------------------------


def misses_per_write(ctx: Context, writes: int) -> dict[str, Any]:
    from django.test.utils import override_settings

    from freshcache.log.relay import get_relay

    out: dict[str, Any] = {}
    variants = [("in-process relay", None), ("in-process + dedicated relay", "dedicated"),
                ("relay off", "off")]
    for label, kind in variants:
        override = None
        dedicated = None
        if kind == "off":
            override = override_settings(FRESHCACHE={**ctx.base, "RELAY": False})
            override.enable()
        elif kind == "dedicated":
            dedicated = subprocess.Popen(
                [PYTHON, "manage.py", "freshcache", "relay"], cwd=EXAMPLE,
                env=django_env("fc-redis"), stdout=subprocess.DEVNULL, start_new_session=True,
            )
            time.sleep(2)  # let it connect and LISTEN
        try:
            kinds = ["save", "update"] + ([] if kind == "off" else ["outside"])
            out[label] = ctx.count_misses(kinds, writes, relay=kind != "off")
        finally:
            if override is not None:
                override.disable()
                get_relay().blocks_reads()  # the relay starts again on first use of the cache
            if dedicated is not None:
                os.killpg(dedicated.pid, signal.SIGTERM)
                dedicated.wait(15)
        wait_log_empty(ctx.side)  # relay-off rows: applied now, before the next variant
    return out


class Context:
    """This process's Django, the throwaway Redis, the comments read and the side connection."""

    def __init__(self, server: RedisServer, targets: int) -> None:
        from django.conf import settings

        from blog.models import Comment, Post

        self.server = server
        self.base = dict(settings.FRESHCACHE)
        self.body, self.calls = cached_body()
        self.side = side_connection()
        post = Post.objects.exclude(slug__startswith="bench-").order_by("-pk").first()
        assert post is not None
        self.comments = list(Comment.objects.filter(post=post).order_by("pk")[:targets])
        if len(self.comments) < targets:
            raise RuntimeError(f"post {post.slug} has fewer than {targets} comments")
        self.Comment = Comment
        self.seq = 0

    def marker(self, what: str) -> str:
        self.seq += 1
        return f"{what}-{self.seq}-{secrets.token_hex(3)}"

    def write(self, kind: str, comment: Any, text: str) -> None:
        if kind == "save":
            comment.body = text
            comment.save()
        elif kind == "update":
            self.Comment.objects.filter(pk=comment.pk).update(body=text)
            comment.body = text
        else:
            self.side.execute("UPDATE blog_comment SET body = %s WHERE id = %s", [text, comment.pk])
            comment.body = text

    def count_misses(self, kinds: list[str], writes: int, relay: bool) -> dict[str, Any]:
        comment = self.comments[0]
        per_kind: dict[str, list[int]] = defaultdict(list)
        stale: dict[str, int] = defaultdict(int)
        for n in range(writes * len(kinds)):
            kind = kinds[n % len(kinds)]
            deadline = time.monotonic() + 10
            while not (o := self.body.outcome(comment.pk)).hit or o.value != comment.body:
                if time.monotonic() > deadline:
                    raise RuntimeError("the value never became a fresh hit")
                time.sleep(0.002)
            before = self.calls[0]
            text = self.marker(kind)
            self.write(kind, comment, text)
            done = time.monotonic() + 0.15
            while time.monotonic() < done or (relay and log_rows(self.side)):
                if self.body(comment.pk) != text:
                    stale[kind] += 1
                time.sleep(0.002)
                if time.monotonic() > done + 10:
                    raise RuntimeError("the relay did not prune the log in 10 s")
            per_kind[kind].append(self.calls[0] - before)
        return {
            kind: {
                "writes": len(v),
                "recomputes": sum(v),
                "per_write": sum(v) / len(v),
                "max": max(v),
                "histogram": {str(k): v.count(k) for k in sorted(set(v))},
                "stale_reads": stale[kind],
            }
            for kind, v in per_kind.items()
        }


# -- 2. lag after an outage -----------------------------------------------------------------


def outage(ctx: Context, readers: list[Reader], rounds: int, k: int, tmp: Path) -> dict[str, Any]:
    per_reader: dict[str, dict[str, list[float]]] = {
        r.name: defaultdict(list) for r in readers
    }
    drained: list[float] = []
    write_ms: list[float] = []
    for rnd in range(rounds):
        targets = ctx.comments[:k]
        warm(readers, {c.pk: c.body for c in targets})
        stop_file = tmp / f"outage-{rnd}.stop"
        for r in readers:
            r.send(cmd="watch", pks=[c.pk for c in targets], stop_file=str(stop_file),
                   max_seconds=60)
        time.sleep(0.3)
        ctx.server.pause()
        acks: dict[int, tuple[int, str]] = {}
        try:
            for c in targets:
                text = ctx.marker(f"outage{rnd}")
                t_invoke = time.monotonic_ns()
                ctx.write("save", c, text)
                acks[c.pk] = (time.monotonic_ns(), text)
                write_ms.append((acks[c.pk][0] - t_invoke) / 1e6)
            time.sleep(0.3)
        finally:
            t_cont = time.monotonic_ns()
            ctx.server.resume()
        drained.append((wait_log_empty(ctx.side) - t_cont) / 1e6)
        time.sleep(1.5)
        stop_file.touch()
        for r in readers:
            result = analyse_outage(r.answer()["rows"], acks, t_cont)
            for key, value in result.items():
                per_reader[r.name][key].append(value)
        print(f"relay lag: outage round {rnd + 1}/{rounds}", file=sys.stderr, flush=True)
    return {
        "rounds": rounds,
        "writes_per_round": k,
        "failed_write_ms": summary(write_ms),
        "log_empty_after_sigcont_ms": summary(drained),
        "readers": {
            name: {
                "stale_reads": int(sum(d["stale_reads"])),
                "stale_reads_after_sigcont": int(sum(d["stale_after"])),
                "reads": int(sum(d["reads"])),
                "stale_until_ms": summary(d["stale_until_ms"]),
                "fresh_hits_again_ms": summary(d["hits_again_ms"]),
            }
            for name, d in per_reader.items()
        },
    }


def analyse_outage(rows: list[list[Any]], acks: dict[int, tuple[int, str]],
                   t_cont: int) -> dict[str, float]:
    stale = stale_after = 0
    stale_until = 0
    hits_again: dict[int, int] = {}
    for pk, t0, t1, value, hit in rows:
        t_ack, text = acks[pk]
        if t0 > t_ack and value != text:
            stale += 1
            if t1 > t_cont:
                stale_after += 1
                stale_until = max(stale_until, t1 - t_cont)
        if t0 > t_cont and hit and value == text and pk not in hits_again:
            hits_again[pk] = t1 - t_cont
    return {
        "reads": len(rows),
        "stale_reads": stale,
        "stale_after": stale_after,
        "stale_until_ms": stale_until / 1e6,
        "hits_again_ms": (max(hits_again.values()) / 1e6 if len(hits_again) == len(acks)
                          else float("inf")),
    }


# -- 3. outside writes ----------------------------------------------------------------------


def outside_writes(ctx: Context, readers: list[Reader], writes: int, tmp: Path) -> dict[str, Any]:
    comment = ctx.comments[0]
    lags: dict[str, list[float]] = defaultdict(list)
    windows: dict[str, list[float]] = defaultdict(list)
    stale: dict[str, int] = defaultdict(int)
    batch = 25
    for start in range(0, writes, batch):
        warm(readers, {comment.pk: comment.body})
        stop_file = tmp / f"outside-{start}.stop"
        for r in readers:
            r.send(cmd="watch", pks=[comment.pk], stop_file=str(stop_file), max_seconds=60)
        time.sleep(0.2)
        commits: list[tuple[int, str]] = []
        for _ in range(min(batch, writes - start)):
            text = ctx.marker("outside")
            ctx.write("outside", comment, text)
            commits.append((time.monotonic_ns(), text))
            time.sleep(random.uniform(0.1, 0.2))
        time.sleep(0.3)
        stop_file.touch()
        for r in readers:
            rows = r.answer()["rows"]
            order = {text: i for i, (_, text) in enumerate(commits)}
            for i, (t_commit, _) in enumerate(commits):
                fresh = [t1 for _, t0, t1, v, _ in rows if order.get(v, -1) >= i]
                bad = [t0 for _, t0, _, v, _ in rows if t0 > t_commit and order.get(v, -1) < i]
                lags[r.name].append((min(fresh) - t_commit) / 1e6 if fresh else float("inf"))
                windows[r.name].append((max(bad) - t_commit) / 1e6 if bad else 0.0)
                stale[r.name] += len(bad)
    return {
        "writes": writes,
        "readers": {
            name: {"first_fresh_read_ms": summary(lags[name]),
                   "stale_window_ms": summary(windows[name]),
                   "stale_reads": stale[name]}
            for name in lags
        },
    }


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": percentile(values, 50), "p99": percentile(values, 99),
            "max": max(values), "mean": statistics.fmean(values)}


# -- main -----------------------------------------------------------------------------------


def main(quick: bool) -> dict[str, Any]:
    with RedisServer() as server, tempfile.TemporaryDirectory() as tmpdir:
        store = server.url
        os.environ["BENCH_FRESHCACHE"] = json.dumps({"STORE": store, "KEY_PREFIX": KEY_PREFIX})
        setup_django("fc-redis")
        from freshcache.log.relay import get_relay

        k = 3 if quick else 5
        ctx = Context(server, k)
        get_relay().blocks_reads()  # this process's relay: started, first drain done
        wait_log_empty(ctx.side)
        result: dict[str, Any] = {"redis_server": "throwaway, on a free port"}
        result["misses_per_write"] = misses_per_write(ctx, 5 if quick else 20)
        readers = [Reader("R1 (own relay)", True, store), Reader("R2 (no relay)", False, store)]
        try:
            result["outage"] = outage(ctx, readers, 3 if quick else 12, k, Path(tmpdir))
            result["outside"] = outside_writes(ctx, readers, 30 if quick else 150, Path(tmpdir))
            for r in readers:
                r.send(cmd="quit")
        finally:
            for r in readers:
                r.stop()
        ctx.side.close()
        return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(main(parser.parse_args().quick)))
