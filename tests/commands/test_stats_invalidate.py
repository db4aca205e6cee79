"""``stats`` and ``invalidate``: what they print after real requests and writes."""

from __future__ import annotations

import pytest
from django.core.management import CommandError
from django.test import Client, override_settings

from freshcache import journal
from freshcache.stores import Store
from tests.commands.conftest import DOWN, run, run_json
from tests.commands.site import count_named
from tests.testapp.models import Item

pytestmark = pytest.mark.django_db(transaction=True)


def test_stats_shows_each_view_and_function_busiest_first(site: Store) -> None:
    row = Item.objects.create(name="a")
    client = Client(HTTP_HOST="testserver")
    for _ in range(3):
        assert client.get(f"/item/{row.pk}/").status_code == 200
    assert count_named("a") == 1 and count_named("a") == 1

    text = run("stats").splitlines()
    assert text[0].split()[:3] == ["kind", "name", "requests"]
    page, function = text[1].split(), text[2].split()
    # kind, name, requests, hits, misses, stored, bypasses, hit ratio, ms/miss
    assert page[:8] == ["page", "item", "3", "2", "1", "1", "0", "67%"]
    assert function[:8] == ["function", "tests.commands.site.count_named", "2", "1", "1", "1", "0",
                            "50%"]  # fmt: skip

    (only,) = run_json("stats", "--kind", "function")
    assert (only["name"], only["hits"], only["misses"], only["stored"]) == (
        "tests.commands.site.count_named", 1, 1, 1)  # fmt: skip
    assert only["hit_ratio"] == 0.5 and only["reasons"] == {}


def test_stats_before_anything_happened(site: Store) -> None:
    assert run("stats").strip() == "nothing recorded yet"
    assert run_json("stats") == []


def test_invalidate_a_row_a_model_and_a_tag(site: Store) -> None:
    row = Item.objects.create(name="b")
    client = Client(HTTP_HOST="testserver")
    url = f"/item/{row.pk}/"
    client.get(url)
    assert client.get(url)["X-Freshcache"] == "hit"

    out = run("invalidate", f"testapp.Item:{row.pk}", "weather:oslo")
    assert f"testapp.Item:{row.pk} (the row): testapp.item:{row.pk}" in out
    assert "weather:oslo (tag): weather:oslo" in out
    assert out.splitlines()[-1].endswith("tag(s) bumped on every store")
    assert client.get(url)["X-Freshcache"] == "miss"  # the row's page rendered again
    assert client.get(url)["X-Freshcache"] == "hit"

    found = run_json("invalidate", "testapp.Item")
    assert found["failed"] is False
    (item,) = found["invalidated"]
    assert item["what"] == "every row of" and "testapp.item" in item["tags"]
    assert client.get(url)["X-Freshcache"] == "miss"

    journal.flush()
    sources = [r.source for r in journal.invalidations(limit=3)]
    assert sources == ["invalidate", "invalidate", "write"]  # the last: Item.objects.create


def test_invalidate_a_row_that_no_longer_exists_bumps_its_tag(site: Store) -> None:
    out = run("invalidate", "testapp.Item:424242")
    assert out.startswith("testapp.Item:424242 (no such row now; its tag): testapp.item:424242")


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("testapp.Nope", r"'testapp.Nope': no model testapp.Nope; testapp has: testapp.Item"),
        ("nosuchapp.Post:3", r"no model nosuchapp.Post; no installed app 'nosuchapp'"),
        ("testapp.Item:abc", r"'abc' is not a primary key of testapp.Item"),
        ("", r"a tag cannot be the empty string"),
    ],
)
def test_invalidate_refuses_what_names_nothing_and_bumps_nothing(
    site: Store, given: str, message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        run("invalidate", "weather:first", given)
    journal.flush()
    assert journal.invalidations() == []  # the valid item before it was not bumped either


@pytest.mark.redis
def test_invalidate_with_a_store_down_and_no_log_does_nothing(transactional_db: None) -> None:
    refused = r"store 'default' cannot be reached and no invalidation log would keep the bump"
    with (
        override_settings(FRESHCACHE={"STORE": DOWN, "LOG_DATABASE": None}),
        pytest.raises(CommandError, match=refused + r": nothing was invalidated"),
    ):
        run("invalidate", "weather:oslo")


@pytest.mark.postgres
def test_invalidate_with_a_store_down_keeps_the_bump_in_the_log(transactional_db: None) -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the invalidation log without a shared store needs PostgreSQL")
    with override_settings(FRESHCACHE={"STORE": DOWN}):
        before = run_json("log")["waiting"]
        with pytest.raises(CommandError, match=r"a store did not take the bump; it waits in the "
                           r"invalidation log and a relay applies it"):
            run("invalidate", "weather:oslo")
        assert run_json("log")["waiting"] == before + 1  # nothing lost
