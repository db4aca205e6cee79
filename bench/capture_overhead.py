"""Cost of dependency capture on a miss: render the post page with tracking vs without.

Run in its own process (``python -m bench.capture_overhead SECONDS``), with freshcache disabled
so that every render is a full, uncached render. Each pair renders the same post twice, once per
mode, in alternating order:

* without: capture uninstalled, no scope open (plain Django);
* with: capture installed and a scope open around the render, so every ORM query is analysed
  and its tags collected (what a cache miss pays on top of the render).

Prints one JSON object.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any


def main(seconds: float, max_pairs: int = 5000) -> dict[str, Any]:
    from bench.common import setup_django

    setup_django("nocache")
    from django.test import RequestFactory

    from blog.models import Post
    from blog.views import post_detail
    from freshcache import capture
    from freshcache.scope import open_scope

    slugs = list(Post.objects.order_by("pk").values_list("slug", flat=True)[:100])
    factory = RequestFactory()

    def render(slug: str, tracked: bool) -> tuple[int, int]:
        request = factory.get(f"/post/{slug}/")
        if tracked:
            capture.install()
        else:
            capture.uninstall()
        start = time.perf_counter_ns()
        if tracked:
            with open_scope("bench") as scope:
                response = post_detail(request, slug=slug)
                response.render() if hasattr(response, "render") else None
            tags = len(scope.tags)
        else:
            response = post_detail(request, slug=slug)
            tags = 0
        elapsed = time.perf_counter_ns() - start
        assert response.status_code == 200 and slug.encode() in response.content
        return elapsed, tags

    for slug in slugs[:10]:  # warm connections, templates, code paths
        render(slug, True)
        render(slug, False)
    plain: list[int] = []
    tracked: list[int] = []
    ratios: list[float] = []
    tag_counts: list[int] = []
    deadline = time.monotonic() + seconds
    pairs = 0
    while time.monotonic() < deadline and pairs < max_pairs:
        slug = slugs[pairs % len(slugs)]
        first_tracked = pairs % 2 == 0
        a, tags_a = render(slug, first_tracked)
        b, tags_b = render(slug, not first_tracked)
        with_ns, without_ns = (a, b) if first_tracked else (b, a)
        tracked.append(with_ns)
        plain.append(without_ns)
        ratios.append(with_ns / without_ns)
        tag_counts.append(max(tags_a, tags_b))
        pairs += 1
    capture.install()
    return {
        "pairs": pairs,
        "median_without_ms": statistics.median(plain) / 1e6,
        "median_with_ms": statistics.median(tracked) / 1e6,
        "ratio_of_medians": statistics.median(tracked) / statistics.median(plain),
        "ratio_of_sums": sum(tracked) / sum(plain),
        "median_pair_ratio": statistics.median(ratios),
        "tags_per_render": statistics.median(tag_counts),
    }


if __name__ == "__main__":
    print(json.dumps(main(float(sys.argv[1]) if len(sys.argv) > 1 else 10.0)))
