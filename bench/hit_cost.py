"""The cost of one page-cache hit in-process, without HTTP: Django's ``cache_page`` on Redis vs
freshcache's on Redis, the floor view, and the store calls underneath.

Run in its own process (``python -m bench.hit_cost SECONDS``); the views are called directly
with ``RequestFactory`` requests (no middleware), in interleaved batches. Prints one JSON object.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

BATCH = 50


def main(seconds: float) -> dict[str, Any]:
    from bench.common import setup_django

    setup_django("fc-redis")
    from django.core.cache import caches
    from django.test import RequestFactory
    from django.views.decorators.cache import cache_page as django_cache_page

    from bench.site.views import floor
    from blog import views
    from blog.models import Post
    from freshcache import store
    from freshcache.core import store_key
    from freshcache.http import cache_page

    factory = RequestFactory()
    slug = Post.objects.order_by("pk").values_list("slug", flat=True)[20]
    django_view = django_cache_page(3600, cache="bench")(views.post_detail)
    fresh_view = cache_page(views.post_detail)
    redis_store, cache = store(), caches["bench"]

    def request() -> Any:
        return factory.get(f"/post/{slug}/")

    for view in (django_view, fresh_view):
        for _ in range(2):  # the first call stores, the second must be a hit
            view(request(), slug=slug)
    cases: dict[str, Callable[[], Any]] = {
        "django_cache_page_hit": lambda: django_view(request(), slug=slug),
        "freshcache_cache_page_hit": lambda: fresh_view(request(), slug=slug),
        "floor_view": lambda: floor(request()),
        "django_cache_two_gets": lambda: (cache.get("bench:a"), cache.get("bench:b")),
        "freshcache_store_lookup": lambda: redis_store.lookup(store_key("bench:absent")),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline and rounds < 1000:
        for name, fn in cases.items():
            start = time.perf_counter_ns()
            for _ in range(BATCH):
                fn()
            samples[name].append((time.perf_counter_ns() - start) / BATCH / 1000)
        rounds += 1
    result: dict[str, Any] = {"rounds": rounds, "batch": BATCH}
    for name, values in samples.items():
        result[name] = {"median_us": statistics.median(values), "min_us": min(values)}
    result["freshcache_vs_django_hit"] = (
        result["freshcache_cache_page_hit"]["median_us"]
        / result["django_cache_page_hit"]["median_us"]
    )
    return result


if __name__ == "__main__":
    print(json.dumps(main(float(sys.argv[1]) if len(sys.argv) > 1 else 10.0)))
