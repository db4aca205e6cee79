"""What a write costs with freshcache, and with its invalidation log and triggers.

Run in its own process (``python -m bench.write_cost ROUNDS``) under the ``fc-redis`` settings
(PostgreSQL, the Redis store). Three variants of the same process, switched in place:

  none    no freshcache: capture uninstalled (``freshcache.capture.uninstall()``), the log off
          (``LOG_DATABASE: None``), the log triggers dropped
  nolog   freshcache without the log: capture installed, ``LOG_DATABASE: None``, no triggers
  log     freshcache as shipped: capture, the log, the triggers (``changefeed install``) and the
          in-process relay running
  logsync the same with ``RELAY: False`` in this process: the relay's work (woken by the
          trigger's NOTIFY at commit, it runs while the writer bumps) is done between the timed
          calls instead, as a relay in another process would; it isolates what the log and the
          triggers cost the write itself

Operations, each timed alone (``time.perf_counter_ns`` around the call):

  save    ``comment.save()`` of an existing row (a new body)
  update  ``Comment.objects.filter(post=...).update(body=...)`` over 10,000 rows
  bulk    ``Comment.objects.bulk_create(objs)`` of 1,000 new rows (built before the clock starts)

The machine is noisy, so the variants are interleaved: every round runs each variant once, in
an order that rotates from round to round, and each variant's block runs every operation a few
times. Switching variants (triggers dropped or created, settings changed) happens between
blocks, never inside a timed call. Before each timed call in the ``log`` variant the relay has
drained the log (the background work of the previous write is not billed to the next); how
long that drain took after each write is reported beside it. The rows made by ``bulk`` are
deleted between calls by a separate connection with triggers off (``session_replication_role =
replica``), and the table is vacuumed between rounds, so every variant sees the same table.

Prints one JSON object: medians per variant and operation, and the ratios of each variant to
none (ratio of medians, and the median of the per-round ratios).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections import defaultdict
from typing import Any

VARIANTS = ("none", "nolog", "log", "logsync")
OPS = ("save", "update", "bulk")
UPDATE_ROWS = 10_000
BULK_ROWS = 1_000
SAVES_PER_BLOCK = 6
SLUG = "bench-write-cost"


def side_connection() -> Any:
    """A psycopg connection outside Django (cleanup, waiting for the log), autocommit."""
    import psycopg
    from django.db import connection

    params = connection.get_connection_params()
    for key in ("cursor_factory", "context", "prepare_threshold", "server_side_binding"):
        params.pop(key, None)
    return psycopg.connect(**params, autocommit=True)


class Bench:
    def __init__(self) -> None:
        from django.conf import settings

        from blog.models import Author, Comment, Post

        self.side = side_connection()
        self.base = dict(settings.FRESHCACHE)
        self.override: Any = None
        self.variant: str | None = None
        self.seq = 0
        self.Comment = Comment
        self.set_variant("none")  # the fixture is written without freshcache
        author, _ = Author.objects.get_or_create(slug=SLUG, defaults={"name": "Write cost"})
        self.posts = {}
        for kind in ("update", "bulk"):
            post, _ = Post.objects.get_or_create(
                slug=f"{SLUG}-{kind}",
                defaults={"author": author, "title": f"Write cost {kind}", "body": "-"},
            )
            self.posts[kind] = post
        self._cleanup_bulk()
        missing = UPDATE_ROWS - Comment.objects.filter(post=self.posts["update"]).count()
        post = self.posts["update"]
        Comment.objects.bulk_create(
            [Comment(post=post, author_name="wc", body="0") for _ in range(missing)],
            batch_size=2000,
        )
        self.row = Comment.objects.filter(post=self.posts["update"]).order_by("pk").first()
        self.side.execute("VACUUM ANALYZE blog_comment")

    # -- variants ------------------------------------------------------------------------------

    def set_variant(self, variant: str) -> None:
        from django.test.utils import override_settings

        from freshcache import capture
        from freshcache.log import reset, triggers
        from freshcache.log.relay import get_relay

        if variant == self.variant:
            return
        if self.override is not None:
            self.override.disable()
            self.override = None
        logged = variant in ("log", "logsync")
        if logged and self.variant not in ("log", "logsync"):
            triggers.install("default")
        elif not logged:
            triggers.uninstall("default")
        changes = {"log": {}, "logsync": {"RELAY": False}}.get(variant, {"LOG_DATABASE": None})
        if changes:
            self.override = override_settings(FRESHCACHE={**self.base, **changes})
            self.override.enable()
        if variant == "none":
            capture.uninstall()
        else:
            capture.install()
        reset()
        if variant == "log":
            get_relay().blocks_reads()  # starts the relay, waits for its first drain
            self.wait_for_log()
        self.variant = variant

    def wait_for_log(self, timeout: float = 10.0) -> float:
        """Seconds until the invalidation log is empty (the relay applied and pruned it)."""
        start = time.perf_counter()
        deadline = start + timeout
        while True:
            (rows,) = self.side.execute("SELECT count(*) FROM freshcache_log").fetchone()
            if not rows:
                return time.perf_counter() - start
            if time.perf_counter() > deadline:
                raise RuntimeError(f"the relay left {rows} log row(s) for {timeout}s")
            time.sleep(0.001)

    def _cleanup_bulk(self) -> None:
        with self.side.transaction():
            self.side.execute("SET LOCAL session_replication_role = replica")
            self.side.execute(
                "DELETE FROM blog_comment WHERE post_id = %s", [self.posts["bulk"].pk]
            )

    # -- operations ------------------------------------------------------------------------

    def run(self, op: str) -> tuple[int, float | None]:
        """Time one operation (ns); in the ``log`` variant also the relay's drain after it."""
        self.seq += 1
        body = f"{self.variant}-{self.seq}"
        objs: list[Any] = []
        if op == "bulk":
            post = self.posts["bulk"]
            objs = [self.Comment(post=post, author_name="wc", body=body) for _ in range(BULK_ROWS)]
        elif op == "save":
            self.row.body = body
        start = time.perf_counter_ns()
        n = 1
        if op == "save":
            self.row.save()
        elif op == "update":
            n = self.Comment.objects.filter(post=self.posts["update"]).update(body=body)
        else:
            n = len(self.Comment.objects.bulk_create(objs))
        elapsed = time.perf_counter_ns() - start
        if n != {"save": n, "update": UPDATE_ROWS, "bulk": BULK_ROWS}[op]:
            raise RuntimeError(f"{op} wrote {n} rows")
        drain = None
        if self.variant == "logsync":  # what a relay elsewhere would do, off the clock
            from freshcache.log.relay import drain as apply_log

            started = time.perf_counter()
            apply_log("default")
            drain = time.perf_counter() - started
        elif self.variant == "log":
            drain = self.wait_for_log()
        if op == "bulk":
            self._cleanup_bulk()
        return elapsed, drain

    def close(self) -> None:
        """Remove the fixture (nothing cached depends on it) and reinstall the triggers."""
        self.set_variant("log")
        posts = [p.pk for p in self.posts.values()]
        with self.side.transaction():
            self.side.execute("SET LOCAL session_replication_role = replica")
            self.side.execute("DELETE FROM blog_comment WHERE post_id = ANY(%s)", [posts])
            self.side.execute("DELETE FROM blog_post WHERE id = ANY(%s)", [posts])
            self.side.execute("DELETE FROM blog_author WHERE slug = %s", [SLUG])
        self.side.close()


def main(rounds: int) -> dict[str, Any]:
    from bench.common import setup_django

    setup_django("fc-redis")
    bench = Bench()
    samples: dict[tuple[str, str], list[int]] = defaultdict(list)
    per_round: dict[tuple[str, str], list[float]] = defaultdict(list)
    drains: dict[tuple[str, str], list[float]] = defaultdict(list)
    try:
        for variant in VARIANTS:  # warm every path once, untimed
            bench.set_variant(variant)
            for op in OPS:
                bench.run(op)
        for r in range(rounds):
            order = VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]
            block: dict[tuple[str, str], list[int]] = defaultdict(list)
            for variant in order:
                bench.set_variant(variant)
                plan = ["save"] * SAVES_PER_BLOCK + ["update", "bulk"]
                # Rotate the operations too, so no operation always follows the variant switch.
                plan = plan[r % len(plan) :] + plan[: r % len(plan)]
                for op in plan:
                    elapsed, drain = bench.run(op)
                    block[variant, op].append(elapsed)
                    if drain is not None:
                        drains[variant, op].append(drain)
            for (variant, op), values in block.items():
                samples[variant, op] += values
                per_round[variant, op].append(statistics.median(values))
            bench.side.execute("VACUUM blog_comment")
            print(f"write cost: round {r + 1}/{rounds}", file=sys.stderr, flush=True)
    finally:
        bench.close()
    out: dict[str, Any] = {"rounds": rounds, "saves_per_block": SAVES_PER_BLOCK,
                           "update_rows": UPDATE_ROWS, "bulk_rows": BULK_ROWS, "ops": {}}
    for op in OPS:
        med = {v: statistics.median(samples[v, op]) / 1e6 for v in VARIANTS}
        entry: dict[str, Any] = {
            "samples": len(samples["none", op]),
            "median_ms": med,
            "p90_ms": {v: _p90(samples[v, op]) / 1e6 for v in VARIANTS},
        }
        for v in VARIANTS[1:]:
            entry[f"{v}_vs_none"] = med[v] / med["none"]
            entry[f"{v}_vs_none_round_median"] = statistics.median(
                a / b for a, b in zip(per_round[v, op], per_round["none", op], strict=True)
            )
        for v in ("log", "logsync"):
            entry[f"{v}_drain_ms_median"] = statistics.median(drains[v, op]) * 1e3
        out["ops"][op] = entry
    return out


def _p90(values: list[int]) -> float:
    ordered = sorted(values)
    return ordered[int(0.9 * (len(ordered) - 1))]


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)))
