"""A flood of random query strings against a Redis at ``maxmemory`` (issue 9, item 7).

    python -m bench.memory_flood REQUESTS MAXMEMORY_MB POLICY   (prints one JSON line)

The blog, served in-process by Django's test client with ``freshcache.middleware.CacheMiddleware``
added to its middleware (site-wide caching: every query string is a key of its own), caching
into a throwaway ``redis-server`` started with ``--maxmemory`` and ``--maxmemory-policy``. Each
flood request asks the front page with a random ``?utm_…`` query string, at ``/flood/``: the blog's
front page view without its own ``cache_page`` (which keys only ``?page=``), so every query string
is an entry of its own (a rendered front page, about 25 KB). Every 10th request asks the plain
front page (the fixed page whose hit rate is reported); every 10% of the run a post's title is
changed through the ORM and the front page must show it at once (freshness under eviction).

Reports Redis's ``used_memory`` sampled every 50 requests and its own ``used_memory_peak``,
against ``maxmemory``; the statuses served; the fixed page's hit rate; keys evicted; and the
freshness checks passed. Needs the seeded bench database (``bench/run.py`` seeds it).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from collections import Counter
from typing import Any

from bench.common import setup_django
from bench.throwaway_redis import RedisServer


def flood(requests: int, maxmemory: int, server: RedisServer) -> dict[str, Any]:
    from django.conf import settings
    from django.test import Client, override_settings

    import freshcache
    from blog.models import Post

    client = server.client()
    browser = Client()
    middleware = [*settings.MIDDLEWARE, "freshcache.middleware.CacheMiddleware"]
    statuses: Counter[int] = Counter()
    reasons: Counter[str] = Counter()
    fixed: Counter[str] = Counter()
    samples: list[int] = []
    fresh_checks = stale = 0
    newest = Post.objects.order_by("-published_at", "-pk").first()
    assert newest is not None, "the bench database is not seeded"
    started = time.monotonic()
    with override_settings(MIDDLEWARE=middleware):
        for i in range(requests):
            response = browser.get(f"/flood/?utm_campaign={secrets.token_hex(8)}")
            statuses[response.status_code] += 1
            reasons[response.get("X-Freshcache", "?").split(";")[0]] += 1
            if i % 10 == 0:
                page = browser.get("/")
                statuses[page.status_code] += 1
                fixed[page.get("X-Freshcache", "?").split(";")[0]] += 1
            if i % 50 == 0:
                samples.append(int(client.info("memory")["used_memory"]))
            if i % max(1, requests // 10) == 0:
                newest.title = f"Edition {i} {secrets.token_hex(3)}"
                newest.save()
                fresh_checks += 1
                if newest.title.encode() not in browser.get("/").content:
                    stale += 1
    seconds = time.monotonic() - started
    memory = client.info("memory")
    samples.append(int(memory["used_memory"]))
    stats = client.info("stats")
    served = sum(fixed.values())
    return {
        "requests": requests,
        "seconds": round(seconds, 2),
        "maxmemory": maxmemory,
        "policy": server.extra[-1],
        "peak_used_memory_sampled": max(samples),
        "used_memory_peak": int(memory["used_memory_peak"]),
        "used_memory_end": int(memory["used_memory"]),
        "evicted_keys": int(stats["evicted_keys"]),
        "expired_keys": int(stats["expired_keys"]),
        "keys_end": int(client.dbsize()),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "flood_states": dict(reasons),
        "fixed_page_states": dict(fixed),
        "fixed_page_hit_rate": round(fixed["hit"] / served, 4) if served else 0.0,
        "freshness_checks": fresh_checks,
        "stale_reads": stale,
        "store_errors": freshcache.stats()["store_errors"],
    }


def main(argv: list[str]) -> None:
    requests = int(argv[1]) if len(argv) > 1 else 3000
    maxmemory = int(argv[2] if len(argv) > 2 else 20) * 1024 * 1024
    policy = argv[3] if len(argv) > 3 else "volatile-lru"
    with RedisServer("--maxmemory", str(maxmemory), "--maxmemory-policy", policy) as server:
        os.environ["BENCH_FRESHCACHE"] = json.dumps(
            {"STORE": server.url, "HEADER": True, "KEY_PREFIX": "fcflood"}
        )
        setup_django("fc-redis")
        result = flood(requests, maxmemory, server)
        from freshcache.log.relay import get_relay

        get_relay().stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv)
