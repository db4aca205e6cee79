"""The cost of one page-cache hit in-process, without HTTP: Django's ``cache_page`` on Redis vs
freshcache's on Redis, the floor view, and the store calls underneath.

Run in its own process (``python -m bench.hit_cost SECONDS``); the views are called directly
with ``RequestFactory`` requests (no middleware), in interleaved batches; one process per
library (``python -m bench.hit_cost django|fc-redis|fc-near SECONDS``). Prints one JSON object.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

BATCH = 50


def main(variant: str, seconds: float) -> dict[str, Any]:
    """``variant``: ``django`` (Django's cache_page, freshcache disabled), ``fc-redis`` or
    ``fc-near`` (Redis with a near cache)."""
    from bench.common import setup_django

    setup_django(variant)
    from django.core.cache import caches
    from django.test import RequestFactory
    from django.views.decorators.cache import cache_page as django_cache_page

    from bench.site.views import floor
    from blog import views
    from blog.models import Post
    from freshcache import store
    from freshcache.core import store_key

    factory = RequestFactory()
    slug = Post.objects.order_by("pk").values_list("slug", flat=True)[20]
    # The post page only (the blog's post_detail also counts the view with an UPDATE); its
    # view_count placeholder still runs one query per hit. The front page has no per-request
    # work: its hit is the cache's cost alone.
    if variant == "django":
        post_view = django_cache_page(3600, cache="bench")(views.post_page)
        front_view = django_cache_page(3600, cache="bench")(views.front_page)
    else:  # the blog's own views, with freshcache's @cache_page
        post_view, front_view = views.post_page, views.front_page

    if variant == "fc-near":  # the near cache is used once its channel is healthy
        deadline = time.monotonic() + 10
        while not store().channel.ready() and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.01)
    for _ in range(2):  # the first call stores, the second must be a hit
        post_view(factory.get(f"/post/{slug}/"), slug=slug)
        front_view(factory.get("/"))
    cases: dict[str, Callable[[], Any]] = {
        "page_hit": lambda: post_view(factory.get(f"/post/{slug}/"), slug=slug),
        "front_hit": lambda: front_view(factory.get("/")),
        "floor_view": lambda: floor(factory.get("/")),
    }
    if variant == "django":
        cache = caches["bench"]
        cases["store_calls"] = lambda: (cache.get("bench:a"), cache.get("bench:b"))
    else:
        redis_store = store()
        cases["store_calls"] = lambda: redis_store.lookup(store_key("bench:absent"))
    # The journal (on by default) listens to every hit: the front page's hit without it, side
    # by side, is its cost.
    from freshcache import events, journal

    listening = journal._listen in events._listeners
    toggles: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {}
    if listening:
        cases["front_hit_journal_off"] = cases["front_hit"]
        toggles["front_hit_journal_off"] = (
            lambda: events.unsubscribe(journal._listen),
            lambda: events.subscribe(journal._listen),
        )
    samples: dict[str, list[float]] = {name: [] for name in cases}
    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline and rounds < 1000:
        for name, fn in cases.items():
            before, after = toggles.get(name, (lambda: None, lambda: None))
            before()
            start = time.perf_counter_ns()
            for _ in range(BATCH):
                fn()
            samples[name].append((time.perf_counter_ns() - start) / BATCH / 1000)
            after()
        rounds += 1
    result: dict[str, Any] = {"variant": variant, "rounds": rounds, "batch": BATCH}
    for name, values in samples.items():
        result[name] = {"median_us": statistics.median(values), "min_us": min(values)}
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 10.0)))
