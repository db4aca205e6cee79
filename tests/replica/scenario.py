"""A page read from a streaming standby while its primary is written, run in a child process
by tests/test_read_replicas.py (``python -m tests.replica.scenario MODE``, settings
``tests.replica.settings``). Prints one JSON object: what each step served.

MODE: ``protected`` (``READ_REPLICAS = {"replica": "default"}``), ``unmapped`` (no
``READ_REPLICAS``: reads of ``replica`` are tagged as another database's) or ``unchecked``
(mapped, but the replay check of ``capture/replicas.py`` turned off).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.replica.settings")
django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connections  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django.urls import path  # noqa: E402

from freshcache.http.decorators import cache_page  # noqa: E402
from tests.testapp.models import Item  # noqa: E402


@cache_page
def item(request: HttpRequest, pk: int) -> HttpResponse:
    """A page built from the replica, as a router that sends reads there would build it."""
    return HttpResponse(str(Item.objects.using("replica").get(pk=pk).value))


urlpatterns = [path("r/item/<int:pk>/", item)]


def replayed(value: int, pk: int) -> None:
    deadline = time.monotonic() + 30
    while Item.objects.using("replica").filter(pk=pk, value=value).count() == 0:
        assert time.monotonic() < deadline, "the standby never replayed the write"
        time.sleep(0.01)


def replica_sql(statement: str) -> None:
    with connections["replica"].cursor() as cursor:
        cursor.execute(statement)


def main(mode: str) -> dict[str, Any]:
    call_command("migrate", verbosity=0)
    settings: dict[str, Any] = {"STORE": "memory://", "HEADER": True}
    if mode != "unmapped":
        settings["READ_REPLICAS"] = {"replica": "default"}
    if mode == "unchecked":
        from freshcache.capture import replicas

        replicas.before_read = lambda connection: None
    out: dict[str, Any] = {}
    with override_settings(FRESHCACHE=settings):
        client = Client()
        row = Item.objects.create(name="replicated", value=1)
        replayed(1, row.pk)
        url = f"/r/item/{row.pk}/"

        def get(step: str) -> None:
            response = client.get(url)
            out[step] = [response.content.decode(), response["X-Freshcache"]]

        get("first")
        get("second")  # a hit
        Item.objects.filter(pk=row.pk).update(value=2)
        replayed(2, row.pk)
        get("after_write")  # the write returned and the standby replayed it

        replica_sql("SELECT pg_wal_replay_pause()")
        try:
            Item.objects.filter(pk=row.pk).update(value=3)  # returned; not replayed yet
            get("behind")  # the standby's value: served, but must not be stored
            get("behind_again")
        finally:
            replica_sql("SELECT pg_wal_replay_resume()")
        replayed(3, row.pk)
        get("caught_up")  # a request after the standby replayed the write
        get("caught_up_again")
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
    sys.stdout.flush()
    os._exit(0)  # the relay's and the journal's threads need no goodbye
