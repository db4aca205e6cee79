"""The near cache under a flood of distinct pages: does it stay under its byte bound? (issue 11)

    python -m bench.near_memory post|small PAGES SIZE   (SIZE: 4mb; prints one JSON line)

The blog, served in-process by Django's test client, caching into a throwaway ``redis-server``
with a near cache of ``SIZE`` in front (``?near_cache=SIZE``). Each page of the flood is new (a
random query string; the views' ``@cache_page`` key on the whole query string):

  post   a random post's page (a few KB, a dozen tags: the post's own and the site-wide ones)
  small  ``/small/<pk>/``: one post's title, a few dozen bytes and one row's tags, where the
         per-entry overheads weigh the most

Each is asked twice: stored, then a hit from the near cache, which from then on also keeps the
page it decoded (``Hit.memo``). A post page's render also stores its template fragments
(``{% cachefresh %}``), entries of their own that no page hit decodes. Then:

1. **Counted bytes.** ``NearCache.bytes`` (what the bound is enforced on) after every page: its
   maximum against the bound.
2. **Real bytes, three ways.** Every 5% of the flood, the deep size of the near cache's entries
   and tag index (``sys.getsizeof`` of every object reachable from them, each counted once) and
   the process's RSS. After the flood, twice: the near cache emptied, filled again past its
   bound with ``tracemalloc`` tracing, then emptied once more: the bytes that last emptying gave
   back (tracemalloc's traced memory before minus after, after ``gc.collect()``) are what its
   contents really held. Ratios are real / counted (under 1: the count is conservative).
3. **The invalidation memory.** ``NearCache`` also remembers its last 4,096 invalidations (to
   decide whether an entry fetched meanwhile may be kept), bounded in number, not in bytes and not
   counted against the bound: after the post pages, another store (no near cache) bumps their
   tag sets until that memory is full, as other processes' writes fill a web process's, and its
   deep size is reported.

Needs the seeded bench database (``bench/run.py`` seeds it).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import random
import secrets
import statistics
import sys
import time
import tracemalloc
from collections import Counter, deque
from typing import Any

from bench.common import setup_django
from bench.throwaway_redis import RedisServer

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


def deep_size(*roots: Any) -> int:
    """Bytes of every object reachable from ``roots`` through containers, ``Hit`` and the near
    cache's entries, each counted once (``sys.getsizeof``; allocator rounding not included)."""
    from freshcache.stores import Hit
    from freshcache.stores.near import _Entry

    seen: set[int] = set()
    total = 0
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset | deque):
            stack.extend(obj)
        elif isinstance(obj, _Entry):
            stack += [obj.hit, obj.size]
        elif isinstance(obj, Hit):
            stack += [obj.payload, obj.tags, obj.memo]
        elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            stack += [getattr(obj, f.name) for f in dataclasses.fields(obj)]  # a decoded Page
    return total


def held(near: Any) -> int:
    """Deep size of the entries and the tag index (what the bound is about)."""
    with near._lock:  # the channel's thread drops entries under the same lock
        return deep_size(near._entries, near._by_tag)


def _ratios(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3),
            "max": round(max(values), 3)} if values else {}


#: The pages of a flood: a random post's page, or the small page of a random post's title, with a
#: random query string each (both views' ``@cache_page`` key on the whole query string).
#: Rounds of the tracemalloc measure (they agreed within 1% in the runs of this file's commit).
ROUNDS = 2
SHAPES = {
    "post": lambda slug, pk: f"/post/{slug}/?utm_campaign={secrets.token_hex(8)}",
    "small": lambda slug, pk: f"/small/{pk}/?utm_campaign={secrets.token_hex(8)}",
}


def flood(shape: str, pages: int) -> dict[str, Any]:
    from django.test import Client

    import freshcache
    from blog.models import Post
    from freshcache.stores.near import NearStore

    store = freshcache.store()
    assert isinstance(store, NearStore), store
    near = store.near
    deadline = time.monotonic() + 10
    while not store.channel.ready():
        if time.monotonic() > deadline:
            raise RuntimeError("the invalidation channel never became healthy")
        time.sleep(0.01)
    posts = list(Post.objects.values_list("slug", "pk"))
    assert posts, "the bench database is not seeded"
    url_of = SHAPES[shape]
    browser = Client()
    statuses: Counter[int] = Counter()
    states: Counter[str] = Counter()
    near_served = 0

    def get_page() -> None:
        """A new page, stored, then asked again: a hit from the near cache, which keeps the page
        it decoded with the entry (``Hit.memo``)."""
        nonlocal near_served
        url = url_of(*random.choice(posts))
        for second in (False, True):
            before = near.hits
            response = browser.get(url)
            near_served += second and near.hits > before
            statuses[response.status_code] += 1
            states[response.get("X-Freshcache", "?").split(";")[0]] += 1

    get_page()  # Django's own first-request work, before the baseline
    gc.collect()
    rss_start = rss()
    max_counted = over_bound = 0
    samples: list[dict[str, int]] = []
    started = time.monotonic()
    for i in range(pages):
        get_page()
        max_counted = max(max_counted, near.bytes)
        over_bound += near.bytes > near.max_bytes
        if i % max(1, pages // 20) == 0 or i == pages - 1:
            samples.append({"page": i, "counted": near.bytes, "entries": len(near),
                            "deep": held(near), "rss": rss()})
    seconds = time.monotonic() - started
    with near._lock:
        entries = list(near._entries.values())
    full = len(entries)

    # Real bytes by tracemalloc: what emptying the near cache gives back, after a refill made
    # while tracing (objects allocated before tracing started would not be seen freed).
    traced = []
    tracemalloc.start()
    for _ in range(ROUNDS):
        near.flush()
        for _ in range(full + full // 4):
            get_page()
        gc.collect()
        counted, deep = near.bytes, held(near)
        before = tracemalloc.get_traced_memory()[0]
        near.flush()
        gc.collect()
        freed = before - tracemalloc.get_traced_memory()[0]
        traced.append({"counted": counted, "deep": deep, "freed": freed,
                       "freed_over_counted": round(freed / counted, 3)})
    tracemalloc.stop()

    counted_series = [s for s in samples if s["counted"]]
    result = {
        "shape": shape,
        "pages": pages,
        "seconds": round(seconds, 2),
        "bound": near.max_bytes,
        "max_counted_bytes": max_counted,
        "pages_leaving_it_over_the_bound": over_bound,
        "entries_when_full": full,
        "entries_keeping_a_decoded_page": sum(1 for e in entries if e.hit.memo),
        "payload_bytes_median": statistics.median(len(e.hit.payload) for e in entries),
        "tags_per_entry_median": statistics.median(len(e.hit.tags) for e in entries),
        "counted_per_entry_median": statistics.median(e.size for e in entries),
        "deep_over_counted": _ratios([s["deep"] / s["counted"] for s in counted_series]),
        "max_deep_bytes": max(s["deep"] for s in samples),
        "tracemalloc": traced,
        "freed_over_counted": _ratios([t["freed_over_counted"] for t in traced]),
        "rss": {"start": rss_start, "max": max(s["rss"] for s in samples),
                "end": samples[-1]["rss"]},
        "samples": samples,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "states": dict(states),
        "second_requests_served_by_near_cache": near_served,
    }
    if shape == "post":
        result["invalidations_remembered"] = remembered(store, [e.hit.tags for e in entries])
    return result


def remembered(store: Any, tag_sets: list[frozenset[str]]) -> dict[str, Any]:
    """Fill the near cache's memory of invalidations as a web process's is filled: by other
    processes' bumps (a store of its own here, without a near cache), each message's tags
    decoded afresh; return its size."""
    from freshcache.stores.near import EVENTS
    from freshcache.stores.redis import RedisStore

    near = store.near
    writer = RedisStore("writer", store.inner.url, prefix="fcnearmem")
    choices = [sorted(tags) for tags in tag_sets] or [["t"]]
    bumps = 0
    while len(near._events) < EVENTS and bumps < 2 * EVENTS:
        writer.bump(random.choice(choices))
        bumps += 1
        store.channel.ready()
    writer.close()
    with near._lock:
        events = list(near._events)
        events_bytes = deep_size(near._events)
    tags = sum(len(t or ()) for _, t, _ in events)
    return {
        "count": len(events),
        "capacity": EVENTS,
        "bumps": bumps,
        "tags": tags,
        "deep_bytes": events_bytes,
        "bytes_per_tag": round(events_bytes / max(1, tags), 1),
    }


def main(argv: list[str]) -> None:
    shape = argv[1] if len(argv) > 1 else "post"
    pages = int(argv[2]) if len(argv) > 2 else 1200
    size = argv[3] if len(argv) > 3 else "4mb"
    with RedisServer() as server:
        os.environ["BENCH_FRESHCACHE"] = json.dumps({
            "STORE": f"{server.url}?near_cache={size}",
            "HEADER": True,
            "KEY_PREFIX": "fcnearmem",
        })
        setup_django("fc-redis")
        result = flood(shape, pages)
        from freshcache.log.relay import get_relay

        get_relay().stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv)
