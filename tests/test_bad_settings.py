"""Settings mistakes at run time: uncached pages and one log line, never a 500 (issue 9, item 4).

A store whose URL cannot be built (an unknown option, a value the store rejects, a database
alias that does not exist, a missing driver) computes what is cached in it uncached, with one
WARNING per store; a wrong value elsewhere in ``FRESHCACHE`` turns caching off, with one WARNING
per configuration. ``manage.py check`` names each mistake (tests/test_checks.py).
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import path

import freshcache
from freshcache import counters
from freshcache.log import relay
from freshcache.stores import StoreUnavailable
from tests.test_checks import python_without_redis
from tests.testapp.models import Item

RENDERS: list[str] = []


@freshcache.cache_page
def items_page(request: HttpRequest) -> HttpResponse:
    RENDERS.append(request.path)
    names = ", ".join(Item.objects.order_by("name").values_list("name", flat=True))
    return HttpResponse(f"items: {names}")


@freshcache.cached
def item_names() -> list[str]:
    RENDERS.append("item_names")
    return list(Item.objects.order_by("name").values_list("name", flat=True))


@freshcache.cached(store="pages")
def item_names_in_pages() -> list[str]:
    RENDERS.append("item_names_in_pages")
    return list(Item.objects.order_by("name").values_list("name", flat=True))


@freshcache.cached
async def item_count() -> int:
    RENDERS.append("item_count")
    return 7


urlpatterns = [path("items/", items_page)]


@pytest.fixture
def site(transactional_db: None) -> Iterator[Client]:
    """Two rows, this module's URLs, and renders counted from zero."""
    Item.objects.create(name="a")
    Item.objects.create(name="b")
    RENDERS.clear()
    with override_settings(ROOT_URLCONF=__name__):
        yield Client(raise_request_exception=False)


def warnings_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("freshcache") and r.levelno >= logging.WARNING
    ]


STORE_UNBUILT = (
    "freshcache: store 'default' ({url}) cannot be built, so what is cached in it is computed "
    "uncached until the settings are fixed (manage.py check names the problem): {error}"
)


@pytest.mark.parametrize(
    ("url", "error"),
    [
        # issue 9: every cached page answered 500 (TypeError at the first connection)
        ("redis://127.0.0.1:6379/0?prefx=abc", "FRESHCACHE store 'default' has URL "
         "'redis://127.0.0.1:6379/0?prefx=abc' with unknown option(s) prefx; redis:// "
         "understands: breaker_seconds, client_name, connect_timeout, db, max_connections, "
         "near_cache, near_heartbeat, password, prefix, socket_keepalive, socket_timeout, "
         "username"),
        ("redis://:hunter2@127.0.0.1:6379/0?socket_timeout=fast",
         "socket_timeout must be a number of seconds, not 'fast' (for example "
         "socket_timeout=0.5)"),
        ("redis://127.0.0.1:notaport/0", "Port could not be cast to integer value as 'notaport'"),
        ("memory://?max_entries=0", "memory store 'memory://?max_entries=0': max_entries and "
         "max_tags must be positive"),
        ("memory://?max_entris=5", "FRESHCACHE store 'default' has URL 'memory://?max_entris=5' "
         "with unknown option(s) max_entris; memory:// understands: max_entries, max_tags"),
        ("database://?alias=cache", "FRESHCACHE store 'default' uses database alias 'cache', "
         "which is not in DATABASES"),
        ("database://?near_cache=64mb", "FRESHCACHE store 'default' has URL "
         "'database://?near_cache=64mb': a near cache is a Redis store option. A database:// "
         "store has no invalidation channel a write can wait on (PostgreSQL's NOTIFY reaches "
         "other processes after the COMMIT returns); see docs/internals.md, \"The near "
         "cache\"."),
        ("memory://?near_cache=1mb", "FRESHCACHE store 'default' has URL "
         "'memory://?near_cache=1mb': a near cache is a Redis store option. A memory:// store "
         "lives in the process already."),
        ("redis://127.0.0.1:6379/0?prefix=a&near_cache=1mb&prefix=b", "FRESHCACHE store "
         "'default' has URL 'redis://127.0.0.1:6379/0?prefix=a&near_cache=1mb&prefix=b': "
         "option(s) given twice: prefix"),
        ("redis://127.0.0.1:6379/0?near_cache=", "FRESHCACHE store 'default' has URL "
         "'redis://127.0.0.1:6379/0?near_cache=': option(s) without a value: near_cache"),
        ("redis://127.0.0.1:6379/0?near_cache=4kb", "near_cache must be 0 (none) or at least "
         "64kb, not 4096 bytes: each entry counts 2 KB of overhead plus twice its payload"),
        ("memcached://127.0.0.1:11211", "FRESHCACHE store 'default' has URL "
         "'memcached://127.0.0.1:11211' with unknown scheme 'memcached'; use one of: memory://, "
         "database://, redis://, rediss://, redis+sentinel://, rediss+sentinel://, "
         "redis+cluster://, rediss+cluster://"),
    ],
)  # fmt: skip
def test_a_store_that_cannot_be_built_serves_uncached_pages(
    site: Client, caplog: pytest.LogCaptureFixture, url: str, error: str
) -> None:
    caplog.set_level(logging.WARNING, logger="freshcache")
    # No relay thread here: with one, the reason can be the log's (the next test).
    with override_settings(FRESHCACHE={"STORE": url, "HEADER": True, "RELAY": False}):
        for _ in range(3):
            response = site.get("/items/")
            assert response.status_code == 200
            assert response.content == b"items: a, b"
            assert response["X-Freshcache"] == "bypass; reason=store unavailable"
        assert [item_names() for _ in range(3)] == [["a", "b"]] * 3
        Item.objects.create(name="c")  # a write is not refused either
        assert site.get("/items/").content == b"items: a, b, c"
        assert item_names() == ["a", "b", "c"]
    assert RENDERS == ["/items/"] * 3 + ["item_names"] * 3 + ["/items/", "item_names"]
    shown = url.replace(":hunter2@", ":***@")  # a password never reaches a log
    assert warnings_logged(caplog) == [STORE_UNBUILT.format(url=shown, error=error)]


@pytest.mark.postgres
def test_with_the_relay_running_the_log_waits_too(
    site: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """The rows the triggers logged cannot be applied to the store: the relay keeps them (and
    says so once), and reads stay uncached until they are applied."""
    caplog.set_level(logging.WARNING, logger="freshcache")
    url = "redis://127.0.0.1:6379/0?prefx=abc"
    with override_settings(FRESHCACHE={"STORE": url, "HEADER": True}):
        for _ in range(3):
            response = site.get("/items/")
            assert (response.status_code, response.content) == (200, b"items: a, b")
            assert response["X-Freshcache"] == "bypass; reason=invalidation log not yet applied"
        assert log_rows() >= 2  # the two rows written by the fixture wait
    error = (
        "FRESHCACHE store 'default' has URL 'redis://127.0.0.1:6379/0?prefx=abc' with unknown "
        "option(s) prefx; redis:// understands: breaker_seconds, client_name, connect_timeout, "
        "db, max_connections, near_cache, near_heartbeat, password, prefix, socket_keepalive, "
        "socket_timeout, username"
    )
    assert warnings_logged(caplog) == [
        STORE_UNBUILT.format(url=url, error=error),
        f"freshcache relay: a store is unreachable: store 'default' cannot be built: {error}; "
        "retrying (reads in this process stay uncached meanwhile)",
    ]


async def test_async_cached_function_with_a_store_that_cannot_be_built(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="freshcache")
    RENDERS.clear()
    url = "redis://127.0.0.1:6379/0?prefx=abc"
    with override_settings(FRESHCACHE={"STORE": url, "RELAY": False}):
        assert [await item_count() for _ in range(3)] == [7, 7, 7]
    assert RENDERS == ["item_count"] * 3
    assert len(warnings_logged(caplog)) == 1


def test_one_broken_store_leaves_the_others_caching(
    site: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="freshcache")
    with override_settings(
        FRESHCACHE={
            "STORE": "memory://",
            "STORES": {"pages": "memory://?max_entris=1"},
            "RELAY": False,
        }
    ):
        assert [item_names() for _ in range(3)] == [["a", "b"]] * 3
        assert [item_names_in_pages() for _ in range(3)] == [["a", "b"]] * 3
    assert RENDERS == ["item_names"] + ["item_names_in_pages"] * 3
    assert warnings_logged(caplog) == [
        STORE_UNBUILT.format(url="memory://?max_entris=1", error="FRESHCACHE store 'pages' has "
                             "URL 'memory://?max_entris=1' with unknown option(s) max_entris; "
                             "memory:// understands: max_entries, max_tags").replace(
            "store 'default'", "store 'pages'", 1)
    ]  # fmt: skip


@pytest.mark.parametrize(
    "raw",
    [
        {"ENABLED": "False"},  # issue 9: caching stayed on
        {"ENABLED": "True"},
        {"CACHE_STATUSES": [200, 503]},
        {"MAX_QUERY_PARAMS": "50"},
        {"NEVER_CACHE_PATHS": ["items/"]},
        {"SOCKET_TIMEOUT": None},
        {"LOG_DATABASE": "replica"},
        {"STOER": "memory://"},
        {"STORES": ["memory://"]},
    ],
)
def test_a_wrong_value_turns_caching_off_with_one_warning(
    site: Client, caplog: pytest.LogCaptureFixture, raw: dict[str, Any]
) -> None:
    caplog.set_level(logging.WARNING, logger="freshcache")
    with override_settings(FRESHCACHE={**raw, "HEADER": True}):
        for _ in range(3):
            response = site.get("/items/")
            assert response.status_code == 200
            assert response.content == b"items: a, b"
            assert response["X-Freshcache"] == "bypass; reason=disabled"
        assert [item_names() for _ in range(3)] == [["a", "b"]] * 3
    assert RENDERS == ["/items/"] * 3 + ["item_names"] * 3
    logged = warnings_logged(caplog)
    assert len(logged) == 1
    assert logged[0].startswith("freshcache: caching is off because FRESHCACHE has 1 error(s)")


def test_a_settings_value_that_is_not_a_dict(site: Client) -> None:
    with override_settings(FRESHCACHE="redis://127.0.0.1:6379/0"):
        response = site.get("/items/")
        assert (response.status_code, response.content) == (200, b"items: a, b")
        assert [item_names() for _ in range(2)] == [["a", "b"]] * 2


@pytest.mark.postgres
def test_with_caching_off_by_a_mistake_writes_still_invalidate(transactional_db: None) -> None:
    """Processes with correct settings (here: before and after) read a store that a process
    with a mistake writes under: its writes still bump that store."""
    RENDERS.clear()
    right = {"STORE": "database://", "RELAY": False}
    with override_settings(FRESHCACHE=right):
        assert [item_names(), item_names()] == [[], []]
    with override_settings(FRESHCACHE={**right, "ENABLED": "False"}):
        counters.reset()
        Item.objects.create(name="written with caching off")
        assert freshcache.stats()["bumps"] == 1
        assert item_names() == ["written with caching off"]  # computed, not stored
    with override_settings(FRESHCACHE=right):
        assert item_names() == ["written with caching off"]
        assert item_names() == ["written with caching off"]
    assert RENDERS == ["item_names"] * 3  # stored; uncached; a miss (the bump), then a hit


def log_rows() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM freshcache_log")
        return int(cursor.fetchone()[0])


@pytest.mark.postgres
def test_invalidations_wait_in_the_log_until_the_store_can_be_built(
    transactional_db: None,
) -> None:
    """A process that cannot build a store cannot bump it: the bump fails like one to a store
    that is down, so its log row stays for a process that can (nothing stale once fixed)."""
    RENDERS.clear()
    fixed = {"STORE": "database://", "RELAY": False}
    with override_settings(FRESHCACHE=fixed):
        relay.drain("default")
        assert item_names() == []
        assert item_names() == []
    assert RENDERS.count("item_names") == 1
    with override_settings(FRESHCACHE={**fixed, "STORE": "database://?alais=default"}):
        counters.reset()
        Item.objects.create(name="written while the store could not be built")
        assert freshcache.stats()["bump_failures"] == 1
        assert log_rows() >= 1
        with pytest.raises(StoreUnavailable):
            relay.drain("default")
        assert log_rows() >= 1  # not deleted: nothing applied it
    with override_settings(FRESHCACHE=fixed):
        relay.drain("default")
        assert log_rows() == 0
        assert item_names() == ["written while the store could not be built"]


def test_missing_redis_driver_at_run_time(tmp_path: Path) -> None:
    """Without the redis package (no ``[redis]`` extra): cached code and pages still answer,
    with one warning, in a Python whose environment lacks the package (see test_checks)."""
    python, env = python_without_redis(tmp_path)
    script = (
        "import json, logging, django\n"
        "django.setup()\n"
        "records = []\n"
        "class Keep(logging.Handler):\n"
        "    def emit(self, record): records.append(record.getMessage())\n"
        "logging.getLogger('freshcache').addHandler(Keep(logging.WARNING))\n"
        "import freshcache\n"
        "from django.http import HttpResponse\n"
        "from django.test import Client, override_settings\n"
        "from django.urls import path\n"
        "calls = []\n"
        "@freshcache.cached\n"
        "def answer():\n"
        "    calls.append(1)\n"
        "    return 42\n"
        "@freshcache.cache_page\n"
        "def page(request):\n"
        "    calls.append(2)\n"
        "    return HttpResponse('page')\n"
        "urlpatterns = [path('p/', page)]\n"
        "import sys; sys.modules['urls_here'] = sys.modules['__main__']\n"
        "with override_settings(ROOT_URLCONF='urls_here'):\n"
        "    statuses = [Client().get('/p/').status_code for _ in range(3)]\n"
        "values = [answer() for _ in range(3)]\n"
        "print(json.dumps({'statuses': statuses, 'values': values, 'calls': calls,\n"
        "                  'records': records}))\n"
    )
    result = subprocess.run(
        [*python, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["statuses"] == [200, 200, 200]
    assert seen["values"] == [42, 42, 42]
    assert seen["calls"] == [2, 2, 2, 1, 1, 1]
    assert seen["records"] == [
        STORE_UNBUILT.format(
            url="redis://127.0.0.1:6379/15",
            error="The redis store needs the redis package: pip install 'django-freshcache[redis]'",
        )
    ]


# -- found by a new user (issue 9 break-it review): each was a 500 or a crashed check ---------


@pytest.mark.parametrize(
    "url",
    [
        "redis://:p[ss@127.0.0.1:6379/9",  # a '[' in the password: urlsplit raises
        "redis://[::1/9",
        "redis://127.0.0.1:6379/9?socket_timeout=-1",
        "redis://127.0.0.1:6379/9?socket_timeout=inf",
        "redis://127.0.0.1:6379/9?connect_timeout=1e400",
        # issue 11 break-it review: accepted, and quietly meant something else
        "redis://127.0.0.1:6379/9?near_cache=1",  # a near cache that holds nothing
        "redis://127.0.0.1:6379/9?near_cache=",  # no near cache at all
        "redis://127.0.0.1:6379/9?near_cache=64mb&near_cache=0",  # the last one won
        "memory://?max_entries=",
    ],
)
def test_a_store_url_that_cannot_be_used_is_e005_and_uncached(url: str) -> None:
    from django.core.checks import run_checks
    from django.test import override_settings

    from freshcache.core import fetch

    with override_settings(FRESHCACHE={"STORE": url}):
        ids = [m.id for m in run_checks() if (m.id or "").startswith("freshcache.")]
        assert "freshcache.E005" in ids, ids
        out = fetch("bad-url", lambda: "computed")
        assert (out.value, out.hit, out.stored) == ("computed", False, False)
        freshcache.invalidate("bad-url-tag")  # never raises
    assert "p[ss" not in str(ids)


def test_a_browser_cache_control_with_a_newline_is_reported_not_a_500() -> None:
    from freshcache.conf import read

    settings, found = read({"BROWSER_CACHE_CONTROL": "no-cache\r\nX-Evil: 1"})
    assert [p.setting for p in found] == ["BROWSER_CACHE_CONTROL"]
    assert not settings.enabled  # a mistake turns caching off until fixed, as every other one
