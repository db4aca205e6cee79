"""Invalidation cost vs fan-out, and (Redis) memory per entry and tag metadata size.

Run in its own process per store: ``python -m bench.fanout STORE LEVELS SECONDS`` where STORE is
memory, database or redis. For each fan-out level N (1, 100, 10,000, 100,000):

1. entries 0..N-1 are (re)written through the store API, each depending on the tag a new comment
   on the target post bumps (``blog.comment?post_id=<pk>``), plus two tags of its own and three
   from a pool of 50 (six tags, a realistic page's dependency shape), so all N are valid;
2. one comment is saved on that post, timed (the first save invalidates all N entries), then
   more saves and bare ``invalidate()`` calls of the shared tag are timed;
3. entries 0 and N-1 are looked up: they must now miss.

Prints one JSON object.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from typing import Any

POOL = 50
SAVES = 15
BODY_BYTES = 4096
#: Past this many, the database store's entries are copied in SQL (see ``clone_rows``).
DB_API_ENTRIES = 10_000


def populate(store: Any, start: int, stop: int, shared: str, budget: float) -> int:
    """Write entries ``start..stop-1`` through ``store.set``, 1,000 to a transaction."""
    from django.db import transaction

    written = 0
    deadline = time.monotonic() + budget
    for batch in range(start, stop, 1000):
        if time.monotonic() > deadline:
            raise RuntimeError(f"populating {stop} entries took longer than {budget}s")
        with transaction.atomic():
            written += _populate(store, batch, min(stop, batch + 1000), shared)
    return written


def _populate(store: Any, start: int, stop: int, shared: str) -> int:
    from freshcache.core import _encode, store_key

    body = os.urandom(BODY_BYTES)
    snapshot = store.begin()
    written = 0
    for i in range(start, stop):
        key = f"bench-fanout:{i}"
        tags = [shared, f"bench:row:{i}", f"bench:list:{i}", *(
            f"bench:pool:{(i * 7 + k) % POOL}" for k in range(3)
        )]
        payload = _encode(store, body, key, _Raw())
        if not store.set(store_key(key), payload, tags, snapshot):
            snapshot = store.begin()
            if not store.set(store_key(key), payload, tags, snapshot):
                raise RuntimeError(f"entry {i} was refused twice")
        written += 1
    return written


def clone_rows(start: int, stop: int) -> None:
    """Database store only: fill entries ``start..stop-1`` by copying entry 0's row in SQL.

    ``store.set`` manages about 250 entries/s on a busy 2-core machine, too slow for 100,000.
    The copies depend on the same tags as entry 0 (the shared tag among them), which is all a
    bump could care about: a bump never reads entries. Their payloads are signed for entry 0's
    key, so a lookup of a copy would miss; entries 0..9,999 and N-1 are genuine.
    """
    from django.db import connection

    from freshcache.core import store_key

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO freshcache_entry (key, payload, versions, expires) "
            "SELECT 'clone' || g::text, e.payload, e.versions, e.expires "
            "FROM freshcache_entry e, generate_series(%s, %s) AS g WHERE e.key = %s "
            "ON CONFLICT (key) DO UPDATE SET versions = excluded.versions",
            [start, stop - 1, store_key("bench-fanout:0")],
        )


class _Raw:
    def dumps(self, value: Any) -> bytes:
        return bytes(value)

    def loads(self, data: bytes) -> Any:
        return data


def redis_memory(store: Any, sample: int = 2000) -> dict[str, Any]:
    client = store._client
    prefix = store._entry_prefix
    tag_prefix = store._tag_prefix
    keys = []
    for key in client.scan_iter(match=prefix + "*", count=1000):
        keys.append(key)
        if len(keys) >= sample:
            break
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.execute_command("MEMORY", "USAGE", key, "SAMPLES", "0")
        pipe.get(key)
    replies = pipe.execute()
    usage = replies[0::2]
    # An entry is "<epoch>\n<n>\n" + n bytes of "tag\tversion\n" lines + the payload.
    payload, fields = [], []
    for raw in replies[1::2]:
        _epoch, length, rest = raw.split(b"\n", 2)
        payload.append(len(rest) - int(length))
        fields.append(rest[: int(length)].count(b"\n"))
    tag_count = 0
    tag_bytes = 0
    batch: list[bytes] = []

    def flush() -> None:
        nonlocal tag_bytes
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.execute_command("MEMORY", "USAGE", key, "SAMPLES", "0")
        tag_bytes += sum(pipe.execute())
        batch.clear()

    for key in client.scan_iter(match=tag_prefix + "*", count=5000):
        tag_count += 1
        batch.append(key)
        if len(batch) >= 5000:
            flush()
    if batch:
        flush()
    # The same payload as a plain string (what a key-value cache such as Django's pays): the
    # allocator rounds a 4 KB value up to its size class whatever the layout.
    scratch = prefix + "bench-plain-string"
    client.set(scratch, os.urandom(int(statistics.median(payload))))
    plain = client.execute_command("MEMORY", "USAGE", scratch, "SAMPLES", "0")
    client.delete(scratch)
    info = client.info("memory")
    overhead = [u - p for u, p in zip(usage, payload, strict=True)]
    tags_per_entry = statistics.median(fields)
    return {
        "entries_sampled": len(keys),
        "body_bytes": BODY_BYTES,
        "median_payload_bytes": statistics.median(payload),
        "median_entry_bytes": statistics.median(usage),
        "median_bytes_beyond_payload": statistics.median(overhead),
        "median_bytes_beyond_body": statistics.median(usage) - BODY_BYTES,
        "tags_per_entry": tags_per_entry,
        "bytes_beyond_payload_per_tag": statistics.median(overhead) / tags_per_entry,
        "plain_string_bytes": plain,
        "bytes_beyond_plain_string": statistics.median(usage) - plain,
        "bytes_beyond_plain_string_per_tag": (statistics.median(usage) - plain) / tags_per_entry,
        "tag_keys": tag_count,
        "tag_keys_bytes": tag_bytes,
        "bytes_per_tag_key": tag_bytes / tag_count if tag_count else 0,
        "used_memory": info["used_memory"],
    }


def main(store_name: str, levels: list[int], budget: float) -> dict[str, Any]:
    from bench.common import setup_django

    setup_django(f"fc-{store_name}")
    from blog.models import Comment, Post
    from freshcache import invalidate
    from freshcache import store as get_store
    from freshcache.core import store_key
    from freshcache.stores import Hit
    from freshcache.tags import predicate_tag

    store = get_store()
    store.clear()
    post = Post.objects.order_by("pk").last()
    assert post is not None
    shared = predicate_tag(Comment, "post_id", post.pk)
    results: list[dict[str, Any]] = []
    memory: dict[str, Any] | None = None
    started = time.monotonic()
    for level in levels:
        t0 = time.monotonic()
        if store_name == "database" and level > DB_API_ENTRIES:
            populate(store, 0, DB_API_ENTRIES, shared, budget)
            clone_rows(DB_API_ENTRIES, level - 1)
            populate(store, level - 1, level, shared, budget)
        else:
            populate(store, 0, level, shared, budget)
        populate_s = time.monotonic() - t0
        first_key, last_key = store_key("bench-fanout:0"), store_key(f"bench-fanout:{level - 1}")
        valid_before = all(isinstance(store.lookup(k), Hit) for k in (first_key, last_key))
        if store_name == "redis" and level == max(levels):
            memory = redis_memory(store)
        saves = []
        for n in range(SAVES):
            comment = Comment(post=post, author_name="fanout", body=f"fan-out save {n}")
            t = time.perf_counter_ns()
            comment.save()
            saves.append((time.perf_counter_ns() - t) / 1e6)
        invalid_after = not any(isinstance(store.lookup(k), Hit) for k in (first_key, last_key))
        bumps = []
        for _ in range(SAVES):
            t = time.perf_counter_ns()
            invalidate(shared)
            bumps.append((time.perf_counter_ns() - t) / 1e6)
        Comment.objects.filter(author_name="fanout").delete()
        results.append({
            "entries": level,
            "populate_seconds": populate_s,
            "valid_before": valid_before,
            "invalidated": invalid_after,
            "first_save_ms": saves[0],
            "median_save_ms": statistics.median(saves),
            "p90_save_ms": sorted(saves)[int(len(saves) * 0.9)],
            "median_invalidate_ms": statistics.median(bumps),
            "saves_ms": saves,
        })
        print(f"fan-out {store_name} {level}: save {statistics.median(saves):.2f} ms "
              f"(first {saves[0]:.2f}), invalidate {statistics.median(bumps):.3f} ms, "
              f"populated in {populate_s:.1f}s", file=sys.stderr, flush=True)
    store.clear()
    return {
        "store": store_name,
        "shared_tag": shared,
        "levels": results,
        "memory": memory,
        "seconds": time.monotonic() - started,
    }


if __name__ == "__main__":
    name = sys.argv[1]
    levels = [int(x) for x in sys.argv[2].split(",")]
    print(json.dumps(main(name, levels, float(sys.argv[3]) if len(sys.argv) > 3 else 300)))
