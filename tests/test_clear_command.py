"""``manage.py freshcache clear``: after a deploy that changes what cached code outputs."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from freshcache.core import fetch
from tests.conftest import store_url


def test_clear_makes_every_entry_of_a_shared_store_miss(
    fresh_store: object, store_kind: str
) -> None:
    assert fetch("clear:page", lambda: "v1").stored
    assert fetch("clear:page", lambda: "v2").hit
    out = StringIO()
    call_command("freshcache", "clear", stdout=out)
    if store_kind == "memory":
        assert "lives in each process" in out.getvalue()
        assert fetch("clear:page", lambda: "v2").hit  # this process's store: not reached
        return
    assert out.getvalue().strip() == "default: cleared"
    after = fetch("clear:page", lambda: "v2")
    assert (after.hit, after.value) == (False, "v2")


@pytest.mark.redis
def test_clear_names_stores_and_refuses_unknown_ones(transactional_db: None) -> None:
    settings = {"STORE": store_url("redis"), "STORES": {"pages": store_url("database")}}
    with override_settings(FRESHCACHE=settings):
        out = StringIO()
        call_command("freshcache", "clear", "--store", "pages", stdout=out)
        assert out.getvalue().strip() == "pages: cleared"
        with pytest.raises(CommandError, match=r"no store named 'pagse'.*default, pages"):
            call_command("freshcache", "clear", "--store", "pagse")
