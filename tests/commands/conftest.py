"""The command tests: a site served through Django's test client on each real store, and the
commands run as ``manage.py freshcache …`` would (``call_command``), their output read back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.test import override_settings

from freshcache import diagnosis, journal
from freshcache.stores import Store
from tests.conftest import store_url

#: A Redis nobody listens on (the port of tcpmux: refused at once).
DOWN = "redis://127.0.0.1:1/0?socket_timeout=0.2&connect_timeout=0.2"


def run(*args: str) -> str:
    """``manage.py freshcache ARGS`` and its standard output (no colours)."""
    out = StringIO()
    call_command("freshcache", *args, stdout=out, stderr=StringIO(), no_color=True)
    return out.getvalue()


def run_json(*args: str) -> Any:
    return json.loads(run(*args, "--json"))


@pytest.fixture
def site(fresh_store: Store, store_kind: str) -> Iterator[Store]:
    """The command-test site on each store, ``X-Freshcache`` on, an empty journal, no
    diagnosis logged yet."""
    conf = {"STORE": store_url(store_kind), "HEADER": True}
    with override_settings(FRESHCACHE=conf, ROOT_URLCONF="tests.commands.site"):
        journal.reset()
        diagnosis.reset()
        yield fresh_store
