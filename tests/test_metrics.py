"""Prometheus metrics, as a scraper sees them: the metrics view's text after real hits, misses
and writes on the real stores, parsed with ``prometheus_client``'s own parser.

Metrics are process-wide counters (prometheus_client's default registry), so each test compares
a scrape taken before with one taken after.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import Client, override_settings
from django.urls import include, path
from prometheus_client.parser import text_string_to_metric_families

import freshcache
from freshcache import cached, events
from freshcache.checks import check_settings
from tests.conftest import store_url
from tests.http_app.views import RENDERS
from tests.testapp.models import Item

pytestmark = pytest.mark.django_db(transaction=True)

urlpatterns = [
    path("metrics/", include("freshcache.metrics.urls")),
    path("", include("tests.urls")),
]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: Client) -> Samples:
    response = client.get("/metrics/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert "no-store" in response["Cache-Control"]
    samples: Samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples.get((metric, tuple(sorted(labels.items()))), 0.0)


class Scraper:
    """Scrapes before and after; ``delta(name, **labels)`` is what happened in between."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.before = scrape(client)
        self.after: Samples = {}

    def again(self) -> Scraper:
        self.after = scrape(self.client)
        return self

    def delta(self, metric: str, /, **labels: str) -> float:
        return value(self.after, metric, **labels) - value(self.before, metric, **labels)


def _metered(kind: str, **extra: Any) -> Iterator[freshcache.Store]:
    settings = {"STORE": store_url(kind), "METRICS": True, "HEADER": True, **extra}
    with override_settings(FRESHCACHE=settings, ROOT_URLCONF=__name__):
        store = freshcache.store()
        store.clear()
        channel = getattr(store, "channel", None)
        deadline = time.monotonic() + 5
        while channel is not None and not channel.ready():
            assert time.monotonic() < deadline, "the near cache's channel never became healthy"
            time.sleep(0.01)
        RENDERS.clear()
        yield store
        store.clear()


@pytest.fixture
def metered(store_kind: str, transactional_db: None) -> Iterator[freshcache.Store]:
    """Each store in turn, with ``METRICS`` on and the metrics view at /metrics/."""
    yield from _metered(store_kind)


@cached
def count_items(kind: str) -> int:
    return Item.objects.filter(name=kind).count()


NAME = "tests.test_metrics.count_items"


def test_hits_misses_writes_and_store_latency(metered: freshcache.Store) -> None:
    scraper = Scraper(Client())
    assert count_items("a") == 0  # miss, stored
    assert count_items("a") == 0  # hit
    Item.objects.create(name="a")  # a write: one invalidation
    assert count_items("a") == 1  # miss, stored
    scraper.again()

    assert scraper.delta("freshcache_hits_total", kind="function", name=NAME) == 1
    assert scraper.delta("freshcache_misses_total", kind="function", name=NAME, stored="true") == 2
    assert scraper.delta("freshcache_compute_seconds_count", kind="function") == 2
    assert scraper.delta("freshcache_invalidations_total", source="write") == 1
    assert scraper.delta("freshcache_tags_bumped_total") >= 1
    store = {"store": "default"}
    # 1 per hit, 2 per miss: single flight looks up again once it holds the lease (flight.py).
    assert scraper.delta("freshcache_store_seconds_count", op="lookup", **store) == 5
    assert scraper.delta("freshcache_store_seconds_count", op="set", **store) == 2
    assert scraper.delta("freshcache_store_seconds_count", op="bump", **store) == 1
    assert 0 < scraper.delta("freshcache_store_seconds_sum", op="lookup", **store) < 3


def test_pages_and_bypasses(metered: freshcache.Store) -> None:
    client = Client()
    scraper = Scraper(client)
    assert client.get("/t/plain/")["X-Freshcache"] == "miss"
    assert client.get("/t/plain/")["X-Freshcache"] == "hit"
    client.post("/t/plain/")
    client.get("/t/plain/", headers={"Authorization": "Basic eDp5"})
    scraper.again()

    page = {"kind": "page", "name": "tests.http_app.views.plain"}
    assert scraper.delta("freshcache_hits_total", **page) == 1
    assert scraper.delta("freshcache_misses_total", stored="true", **page) == 1
    assert scraper.delta("freshcache_bypasses_total", kind="page", reason="method POST") == 1
    reason = "request has Authorization"
    assert scraper.delta("freshcache_bypasses_total", kind="page", reason=reason) == 1


def test_the_metrics_view_is_never_cached(metered: freshcache.Store) -> None:
    """Under the site-wide page cache too: each scrape shows the requests before it."""
    middleware = "freshcache.http.middleware.CacheMiddleware"
    with override_settings(MIDDLEWARE=[middleware]):
        client = Client()
        first = client.get("/metrics/")
        count_items("b")
        second = client.get("/metrics/")
    assert first["X-Freshcache"].startswith("bypass")
    assert first.content != second.content


@pytest.mark.parametrize("store_kind", ["redis-near"], indirect=True)
def test_near_cache_bytes(metered: freshcache.Store) -> None:
    client = Client()
    deadline = time.monotonic() + 10
    while True:  # L1 is filled only while the channel is healthy; a loaded machine may lag it
        count_items("c")  # stored, then hits: either puts the entry in L1 when healthy
        after_store = value(scrape(client), "freshcache_near_cache_bytes", store="default")
        if after_store > 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert after_store > 0
    metered.clear()
    assert value(scrape(client), "freshcache_near_cache_bytes", store="default") == 0


@pytest.mark.postgres
def test_relay_lag(transactional_db: None) -> None:
    """A write from outside Django, logged by the triggers, applied by a relay: the gauge is
    the age of that log row when the relay applied it."""
    from tests.log.conftest import clear_log, outside_params

    clear_log()
    with override_settings(FRESHCACHE={"STORE": "memory://", "METRICS": True, "RELAY": False}):
        with psycopg.connect(**outside_params(), autocommit=True) as conn:
            conn.execute("INSERT INTO testapp_item (name, value) VALUES ('outside', 0)")
        time.sleep(0.5)
        call_command("freshcache", "relay", "--once", stdout=open(os.devnull, "w"))  # noqa: SIM115
        with override_settings(ROOT_URLCONF=__name__):
            lag = value(scrape(Client()), "freshcache_relay_lag_seconds")
    # An age, set by that drain (the gauge starts unset). Not compared with the wait: in full
    # suites the age read 0.18 s after 0.2 s and 0.22 s after 0.5 s (the row is stamped by
    # PostgreSQL, aged by this process's clock, on a loaded machine).
    assert 0 < lag < 30


def test_off_by_default(transactional_db: None) -> None:
    # The journal (on by default) listens too: off here, so nothing else does.
    with override_settings(FRESHCACHE={"STORE": "memory://", "JOURNAL": False},
                           ROOT_URLCONF=__name__):  # fmt: skip
        assert Client().get("/metrics/").status_code == 404
        assert not events.listening
        assert type(freshcache.store()).__name__ == "MemoryStore"  # no timing wrapper


def test_without_prometheus_client(
    transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import raises ImportError
    with override_settings(FRESHCACHE={"STORE": "memory://", "METRICS": True, "JOURNAL": False}):
        errors = [m for m in check_settings() if m.id == "freshcache.E023"]
        assert [(e.msg, e.hint) for e in errors] == [(
            "FRESHCACHE['METRICS'] is True but prometheus_client is not installed, so no "
            "metrics are collected and the metrics view raises ImproperlyConfigured.",
            "pip install 'django-freshcache[prometheus]', or set FRESHCACHE['METRICS'] to "
            "False. See docs/observability.md.",
        )]  # fmt: skip
        assert count_items("d") == 0  # caching works, uncounted
        assert not events.listening
        from freshcache.metrics.views import metrics

        with pytest.raises(ImproperlyConfigured, match=r"django-freshcache\[prometheus\]"):
            metrics(Client().get("/").wsgi_request)


WORKER = """
import os, sys
import django
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
django.setup()
from django.test import override_settings
from freshcache import cached, depends_on

@cached
def weather(city):
    depends_on("weather:" + city)
    return city.upper()

with override_settings(FRESHCACHE={"STORE": "memory://", "METRICS": True, "LOG_DATABASE": None}):
    weather("paris"); weather("paris")
    if sys.argv[1] == "scrape":
        from django.test import RequestFactory
        from freshcache.metrics.views import metrics
        sys.stdout.write(metrics(RequestFactory().get("/metrics/")).content.decode())
"""


def test_multiprocess_mode_adds_up_every_process(tmp_path: Path) -> None:
    """Two worker processes (as under gunicorn) write their counts to
    ``PROMETHEUS_MULTIPROC_DIR``; the process that serves the scrape adds them up."""
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "PYTHONPATH": os.pathsep.join([str(root), str(root / "src"), str(root / "example")]),
    }
    for role in ("work", "work", "scrape"):
        done = subprocess.run(
            [sys.executable, "-c", WORKER, role],
            env=env,
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
    families = {f.name: f for f in text_string_to_metric_families(done.stdout)}
    hits = {tuple(sorted(s.labels.items())): s.value for s in families["freshcache_hits"].samples}
    name = "__main__.weather"
    assert hits[(("kind", "function"), ("name", name))] == 3  # one hit in each process
