"""Run the relay command until it applies, for tests that run it right after a failover."""

from __future__ import annotations

import io
import time

from django.core.management import CommandError, call_command


def relay_once_applied(seconds: float = 15.0) -> None:
    """``manage.py freshcache relay --once`` until it succeeds, for at most ``seconds``.

    Right after a failover, on a loaded machine, the sentinels may call the new master down
    for a moment (the tests' down-after is 300 ms), or a cluster node may not serve a slot
    yet: the command then fails with "nothing was applied (the rows wait)", and the rows are
    applied by a later run. CI failed once on a single try. Any other failure is raised."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            call_command("freshcache", "relay", "--once", stdout=io.StringIO())
            return
        except CommandError as exc:
            assert "nothing was applied (the rows wait)" in str(exc), exc
            assert time.monotonic() < deadline, f"the relay never reached the master: {exc}"
            time.sleep(0.1)
