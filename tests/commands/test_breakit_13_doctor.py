"""Break-it review of issue 13: what `doctor` says about views it has numbers for."""

from __future__ import annotations

import pytest
from django.test import Client

from freshcache.stores import Store
from tests.commands.conftest import run, run_json
from tests.testapp.models import Item

pytestmark = pytest.mark.django_db(transaction=True)


def test_doctor_names_a_view_every_request_of_which_bypasses(site: Store) -> None:
    """A page every visitor of which has a session (a site where everyone is logged in, or a
    middleware that touches the session) is computed on every request and never stored: each
    is a *bypass*, not a miss. `doctor` lists only names with misses, so it answers "ok: every
    view, fragment and function computed was stored at least once", and the fix it has for
    "request has a session" (vary_on_user=True) is never shown. Same for Authorization and
    "transaction has written"."""
    row = Item.objects.create(name="members only")
    client = Client(HTTP_HOST="testserver")
    client.cookies["sessionid"] = "whatever"
    for _ in range(3):
        response = client.get(f"/item/{row.pk}/")
        assert response["X-Freshcache"].startswith("bypass; reason=request has a session")
    report = run_json("doctor")
    assert [n["name"] for n in report["never_stored"]] == ["item"]
    assert "ok: every view, fragment and function computed was stored" not in run("doctor")


def test_doctor_with_an_empty_journal_does_not_say_everything_was_stored(site: Store) -> None:
    """Nothing recorded (a memory:// store read from another process, a journal just reset,
    JOURNAL on for a second): doctor says "ok: every view ... was stored at least once", a
    claim about views it has not seen."""
    assert "ok: every view, fragment and function computed was stored" not in run("doctor")


@pytest.mark.parametrize("command", ["inspect", "why"])
def test_a_malformed_url_is_a_command_error(site: Store, command: str) -> None:
    """`inspect http://[::1/x/` (a typo'd IPv6 host) ends in a ValueError traceback from
    urlsplit, where every other bad input gets a one-line CommandError."""
    from django.core.management import CommandError

    with pytest.raises(CommandError):
        run(command, "http://[::1/item/1/")
