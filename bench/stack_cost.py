"""The cost of one front-page hit in-process through the whole stack: Django's WSGI handler, the
blog's middleware, URL resolution and the view, with no HTTP server and no socket.

One process per variant (``python -m bench.stack_cost VARIANT SECONDS``: ``fc-redis``,
``fc-redis-early``, ``fc-near``, ``fc-early``): the front page (a hit, or an early hit) and
the front page as a constant (``/floor/page/``: its bytes returned by a view, the floor of its
hits) through the same handler, in interleaved batches. CPU microseconds per request
(``time.process_time``, so the machine's other load counts less), medians over the batches.
Prints one JSON object.
"""

from __future__ import annotations

import io
import json
import statistics
import sys
import time
from typing import Any

BATCH = 50


def main(variant: str, seconds: float) -> dict[str, Any]:
    from bench.common import setup_django

    setup_django(variant)
    from django.core.handlers.wsgi import WSGIHandler

    from freshcache import store

    handler = WSGIHandler()

    def get(path: str) -> tuple[str, bytes]:
        environ = {
            "REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SCRIPT_NAME": "",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "HTTP_HOST": "127.0.0.1:8000",
            "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr,
        }
        status: list[str] = []
        result = handler(environ, lambda s, headers, exc=None: status.append(s))
        body = b"".join(result)
        result.close()  # type: ignore[attr-defined]
        return status[0], body

    channel = getattr(store(), "channel", None)  # a near cache is used once it is healthy
    deadline = time.monotonic() + 10
    while channel is not None and not channel.ready() and time.monotonic() < deadline:
        time.sleep(0.01)
    for _ in range(3):  # a miss, a hit (recorded for early hits), then what is measured
        front = get("/")
        floor = get("/floor/page/")
    assert front[0].startswith("200") and floor[0].startswith("200")
    assert front[1] == floor[1], "the floor must be the front page's own bytes"
    cases = {"front_hit": "/", "floor_page": "/floor/page/"}
    samples: dict[str, list[float]] = {name: [] for name in cases}
    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline and rounds < 1000:
        for name, path in cases.items():
            start = time.process_time()
            for _ in range(BATCH):
                get(path)
            samples[name].append((time.process_time() - start) / BATCH * 1e6)
        rounds += 1
    result: dict[str, Any] = {"variant": variant, "rounds": rounds, "batch": BATCH}
    for name, values in samples.items():
        result[name] = {"median_us": statistics.median(values), "min_us": min(values)}
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 10.0)))
