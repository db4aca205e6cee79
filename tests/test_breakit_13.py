"""Break-it review of issue 13's observability (journal, dashboard, commands, outcome, shadow).

Each test reproduces a finding on the current code, on the real stores the suite uses."""

from __future__ import annotations

import pytest
from django.conf.urls.i18n import i18n_patterns
from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.test import Client, override_settings
from django.urls import path
from django.utils import translation

from freshcache import cache_page, invalidate, journal, metrics
from freshcache.stores import Store
from tests.commands.conftest import run_json
from tests.conftest import store_url
from tests.testapp.models import Item

pytestmark = pytest.mark.django_db(transaction=True)


LONG_FRAGMENT = engines["django"].from_string(
    "{% load freshcache %}{% cachefresh name %}x{% endcachefresh %}"
)


def test_a_long_fragment_name_does_not_kill_the_journal(fresh_store: Store) -> None:
    """A fragment's name is any template expression: one over ~380 characters makes a counter
    name longer than freshcache_counter.name (varchar 400) on PostgreSQL. The whole flush then
    fails, with every other name's numbers, and again at every interval after (the WARNING is
    logged once per process): the journal, `stats`, `doctor` and the dashboard go blind."""
    journal.reset()
    LONG_FRAGMENT.render({"name": "sidebar-" + "x" * 400})
    LONG_FRAGMENT.render({"name": "short"})
    journal.flush()
    names = {s.name for s in journal.stats()}
    assert "short" in names


# -- inspect on an i18n site --------------------------------------------------------------




@cache_page
def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"{translation.get_language()} {Item.objects.count()}")


urlpatterns = [
    *i18n_patterns(path("hello/", hello, name="i18n-hello")),
    path("plain-hello/", hello, name="plain-hello"),
]

I18N = {
    "USE_I18N": True,
    "LANGUAGE_CODE": "en",
    "LANGUAGES": [("en", "English"), ("fr", "French")],
    "MIDDLEWARE": [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.locale.LocaleMiddleware",
        "django.middleware.common.CommonMiddleware",
    ],
}


@pytest.mark.parametrize(
    ("url", "args"),
    [
        ("/fr/hello/", []),  # the language from the URL's prefix (i18n_patterns)
        ("/plain-hello/", ["--header", "Accept-Language: fr"]),  # from the header
    ],
)
def test_inspect_sees_a_page_cached_in_another_language(
    fresh_store: Store, store_kind: str, url: str, args: list[str]
) -> None:
    """The page key holds the active language (http/keys.py), which LocaleMiddleware activates
    from the URL prefix or Accept-Language. `inspect` builds the request without running it:
    `/fr/hello/` is reported as a 404 ("no URL pattern matches") and the page cached for
    Accept-Language: fr as "not cached", though both are served from the cache."""
    conf = {"STORE": store_url(store_kind), "HEADER": True}
    with override_settings(FRESHCACHE=conf, ROOT_URLCONF=__name__, **I18N):
        client = Client(HTTP_HOST="testserver", HTTP_ACCEPT_LANGUAGE="fr")
        assert client.get(url).content.startswith(b"fr ")
        assert client.get(url)["X-Freshcache"] == "hit"
        translation.activate("en")  # as in `manage.py freshcache` (LANGUAGE_CODE): the client
        # left the language of its last request active in this thread
        found = run_json("inspect", url, *args)
    assert found["state"] == "valid"


# -- attacker-chosen values as metric labels ----------------------------------------------



def test_a_visitor_cannot_mint_metric_label_values(transactional_db: None) -> None:
    """`freshcache_bypasses_total{kind,reason}` cuts the reason at its first ':', but a page's
    bypass reason for an unsafe method is `method <the request's method>`, as sent by the
    client: any token is a method to Django. A visitor sending FOO0, FOO1, ... creates one time
    series each, for ever, in every process (and in the journal, 16 per name per process:
    every worker recycle adds 16 more). Reasons used as labels must come from a closed set."""
    pytest.importorskip("prometheus_client")
    conf = {"STORE": "memory://", "METRICS": True}
    with override_settings(FRESHCACHE=conf, ROOT_URLCONF=__name__):
        client = Client()
        for i in range(40):
            client.generic(f"PROBE{i}", "/plain-hello/")
        from prometheus_client import REGISTRY

        reasons = {
            sample.labels["reason"]
            for family in REGISTRY.collect()
            if family.name == "freshcache_bypasses"
            for sample in family.samples
            if sample.labels.get("reason", "").startswith("method PROBE")
        }
    assert metrics is not None
    assert len(reasons) <= 1, f"{len(reasons)} label values minted by one visitor"


# -- the journal's size on Redis ----------------------------------------------------------



@pytest.mark.parametrize("store_kind", ["redis"])
def test_the_redis_journal_stays_near_its_documented_size(fresh_store: Store) -> None:
    """docs/observability.md: the Redis journal is "at most about 1 MB". A record keeps up to
    100 tags of up to 200 characters (a predicate tag on a slug, a bulk update of 100 rows),
    and the ring keeps 500 records: about 10 MB, ten times the bound users size Redis for."""
    journal.reset()
    for n in range(500):
        invalidate(*[f"blog.post?slug={n:03d}-{i:03d}-" + "s" * 170 for i in range(100)])
        if n % 50 == 49:
            journal.flush()
    journal.flush()
    client = fresh_store._client  # type: ignore[attr-defined]
    ring = fresh_store.journal()._ring_prefix + "invalidations"  # type: ignore[attr-defined]
    used = client.memory_usage(ring, samples=0)
    assert used <= 1.5 * 1024 * 1024, f"the invalidations ring alone holds {used / 2**20:.1f} MB"
