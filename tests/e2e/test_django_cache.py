"""The issue's reproduction over real HTTP: gunicorn, 2 workers, a shared freshcache store (Redis),
and a page whose render reads a value kept in Django's cache (issue 9, item 3).

* Django's default ``CACHES`` (a ``LocMemCache`` in each worker): a write in one worker clears
  only its own copy, so the other worker's copy stays old. freshcache cannot make that copy fresh,
  but it must never *store* a render built from it: every response is rendered, none is a hit,
  and the header names the reason.
* A shared ``CACHES`` (Django's Redis backend): the page is stored, served as a hit by both
  workers, and the ``cache.delete()`` of the write invalidates it: the first GET after the write
  shows the new value, from either worker.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from .client import Got, get, get_many
from .conftest import (
    REDIS_STORE,
    RUN,
    Blog,
    clear_redis_prefix,
    free_port,
    gunicorn_argv,
    start_server,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[2]
LOCAL_REASON = "read a process-local cache (locmem 'default')"
TITLE_RE = re.compile(r"root=\[(.*?)\]")


@pytest.fixture(scope="module", params=["locmem", "redis"])
def cache_site(
    request: pytest.FixtureRequest, blog_db: list[tuple[int, str, str]]
) -> Iterator[tuple[Blog, str]]:
    """The blog plus the two views of ``cache_site_urls``, under gunicorn with 2 workers."""
    store = REDIS_STORE.replace(f"prefix={RUN}", f"prefix={RUN}dc")
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.e2e.cache_site",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", str(ROOT / "src"))]),
        "E2E_DJANGO_CACHE": "" if request.param == "locmem" else REDIS_STORE.split("?")[0],
        "E2E_DJANGO_CACHE_PREFIX": f"{RUN}dj",
    }
    port = free_port()
    server = start_server(gunicorn_argv(port), store, port, env)
    try:
        yield Blog(f"http://127.0.0.1:{port}", store, blog_db, server), request.param
    finally:
        server.stop()
        clear_redis_prefix()


def title(got: Got) -> str:
    match = TITLE_RE.search(got.text)
    assert got.status == 200 and match, (got.status, got.text[:300])
    return match.group(1)


def until_both_workers(url: str, *, hits: bool = False, rounds: int = 10) -> list[Got]:
    seen: list[Got] = []
    for _ in range(rounds):
        seen += get_many([url] * 8, concurrency=4)
        pids = {g.pid for g in seen}
        if len(pids) >= 2 and (not hits or len({g.pid for g in seen if g.state == "hit"}) >= 2):
            return seen
    pytest.fail(f"both workers did not answer{' with hits' if hits else ''}: {pids}")


def move_root(site: Blog) -> tuple[str, str]:
    """Change the root's title through one worker; return (the new title, that worker's pid)."""
    new = f"Root {uuid.uuid4().hex[:10]}"
    done = requests.post(site.url("/e2e/move-root/"), data={"title": new},
                         headers={"Connection": "close"}, timeout=15)  # fmt: skip
    assert done.status_code == 200, done.text[:2000] + site.log()
    pid = re.search(r'<span class="pid">(\d+)</span>', done.text)
    assert pid, done.text[:500]
    return new, pid.group(1)


def test_a_render_that_reads_django_cache_is_never_served_stale(
    cache_site: tuple[Blog, str],
) -> None:
    site, mode = cache_site
    url = site.url("/e2e/links/")
    if mode == "locmem":
        per_process_cache(site, url)
    else:
        shared_cache(site, url)


def per_process_cache(site: Blog, url: str) -> None:
    before = until_both_workers(url)  # each worker now keeps the root's title in its locmem
    for got in before:
        assert got.state != "hit", "a render that read a per-process cache was stored"
    assert any(LOCAL_REASON in got.headers["X-Freshcache"] for got in before), before[-1].headers
    new, writer = move_root(site)
    after = until_both_workers(url)
    for got in after:
        assert got.headers["X-Freshcache"].startswith(("miss", "bypass")), got.headers
        if got.pid == writer:
            assert title(got) == new, "the writing worker's own render is stale"
    # The other worker still renders from its own old copy: Django's per-process cache, which
    # freshcache cannot reach. What freshcache guarantees is that no such render is stored.
    assert any(LOCAL_REASON in got.headers["X-Freshcache"] for got in after)


def shared_cache(site: Blog, url: str) -> None:
    until_both_workers(url, hits=True)
    new, _ = move_root(site)
    first = get(url)
    assert title(first) == new, f"the first GET after the write was stale ({first.state})"
    for got in until_both_workers(url, hits=True):
        assert title(got) == new, f"stale page from worker {got.pid} ({got.state})"
