"""Read replicas (``READ_REPLICAS``, ``capture/replicas.py``) against a real PostgreSQL primary
and its streaming standby started on loopback (tests/helpers/pg_standby.py), with the standby's
replay paused (``pg_wal_replay_pause()``) while the primary is written.

Each mode runs tests/replica/scenario.py in a child process (its own ``DATABASES``) and reports
what each request served. ``protected`` is what users get; ``unmapped`` and ``unchecked`` show
the two stale pages the setting and the replay check exist for (so the scenario can fail).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.pg_standby import Standby, child, started

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module")
def standby() -> Iterator[Standby]:
    yield from started()


def run(pg: Standby, mode: str) -> dict[str, Any]:
    return child(pg, "tests.replica.scenario", "tests.replica.settings", mode)


def state(served: list[str]) -> str:
    return served[1].split(";")[0]


def test_a_page_read_from_a_standby_is_never_stale_once_it_replayed_the_write(
    standby: Standby,
) -> None:
    seen = run(standby, "protected")
    assert [seen["first"][0], state(seen["first"])] == ["1", "miss"], seen
    assert [seen["second"][0], state(seen["second"])] == ["1", "hit"]
    # The primary's write invalidates the page built from the standby.
    assert seen["after_write"][0] == "2"
    # While the standby lags, its (old) rows are served as the view reads them, never stored:
    for step in ("behind", "behind_again"):  # the first was not stored
        assert seen[step][0] == "2" and state(seen[step]) == "bypass", seen
        assert "read replica 'replica' was" in seen[step][1]
        assert "behind 'default'" in seen[step][1]
    # Once it replayed the write, no request gets the lagging render.
    assert seen["caught_up"][0] == "3"
    assert [seen["caught_up_again"][0], state(seen["caught_up_again"])] == ["3", "hit"]


def test_without_read_replicas_a_write_on_the_primary_never_reaches_the_page(
    standby: Standby,
) -> None:
    """Why the setting exists: the standby's reads are tagged as another database's."""
    seen = run(standby, "unmapped")
    assert seen["after_write"] == ["1", seen["after_write"][1]]
    assert state(seen["after_write"]) == "hit"  # stale: the write on default bumped nothing read


def test_without_the_replay_check_the_lagging_render_is_stored(standby: Standby) -> None:
    """Why the replay check exists: the render from the lagging standby (2) is stored under the
    versions of the write that made it old (3), and served after the standby caught up."""
    seen = run(standby, "unchecked")
    assert seen["after_write"][0] == "2"
    assert seen["caught_up"][0] == "2" and state(seen["caught_up"]) == "hit"


# -- settings (no standby needed) ----------------------------------------------------------


def _databases_with_a_replica() -> dict[str, Any]:
    from django.conf import settings

    default = settings.DATABASES["default"]
    return {**settings.DATABASES, "replica": {**default, "TEST": {"MIRROR": "default"}}}


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_a_replica_not_named_in_read_replicas_is_warned_about_and_tagged_apart() -> None:
    from django.test import override_settings

    from freshcache.checks import check_settings
    from freshcache.tags import table_tag
    from tests.testapp.models import Item

    databases = _databases_with_a_replica()
    with override_settings(DATABASES=databases, FRESHCACHE={"STORE": "memory://"}):
        (warning,) = [m for m in check_settings(databases=[]) if m.id == "freshcache.W008"]
        assert "READ_REPLICAS" in warning.msg and "{'replica': 'default'}" in warning.hint
        assert table_tag(Item, "replica") == "replica/testapp.item"  # another database's
    mapped = {"STORE": "memory://", "READ_REPLICAS": {"replica": "default"}}
    with override_settings(DATABASES=databases, FRESHCACHE=mapped):
        assert "freshcache.W008" not in [m.id for m in check_settings(databases=[])]
        assert table_tag(Item, "replica") == table_tag(Item) == "testapp.item"


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["replica"], "must be a dict mapping the alias of each read replica"),
        ({"replica": "defualt"}, "names 'defualt' as a primary, but DATABASES has no such "
                                 "alias (default, other, replica) (did you mean 'default'?)"),
        ({"replica": "replica"}, "names 'replica' as a replica of itself"),
        ({"replica": "other", "other": "default"}, "names 'other' as the primary of 'replica', "
                                                   "but 'other' is a replica too"),
    ],
)
def test_a_read_replicas_mistake_is_named(value: Any, message: str) -> None:
    from django.test import override_settings

    from freshcache.conf import problems

    databases = {**_databases_with_a_replica(), "other": _databases_with_a_replica()["replica"]}
    with override_settings(DATABASES=databases, FRESHCACHE={"READ_REPLICAS": value}):
        found = [p for p in problems() if p.setting == "READ_REPLICAS"]
        assert found and message in found[0].message, found
