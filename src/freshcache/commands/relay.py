"""``relay [--once]``: apply the invalidation log to the stores in this process until stopped
(``--once``: until the log is empty), for deployments that want a dedicated relay."""

from __future__ import annotations

import contextlib
import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from .base import with_log_database

NAME = "relay"
HELP = "apply the invalidation log to the stores"


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument("--once", action="store_true", help="drain the log once and exit")
    parser.add_argument("--database", default=None, help="the log database alias")


def _relay(command: BaseCommand, using: str, options: dict[str, Any]) -> None:
    from ..log import is_active
    from ..log.relay import Relay, drain

    if not is_active(using):
        raise CommandError(
            f"the invalidation log is not active on {using!r} (run `manage.py migrate`; "
            "on SQLite a shared store must be configured)"
        )
    if options["once"]:
        from ..stores import StoreUnavailable

        try:
            rows, bumped, _ = drain(using)
        except StoreUnavailable as exc:
            raise CommandError(
                f"a store is unreachable, nothing was applied (the rows wait): {exc}"
            ) from exc
        command.stdout.write(f"{rows} log row(s) read, {bumped} applied")
        return
    relay = Relay()
    signal.signal(signal.SIGTERM, lambda *a: relay._stop.set())
    command.stdout.write(f"relaying the invalidation log of {using!r}; Ctrl-C to stop")
    with contextlib.suppress(KeyboardInterrupt):
        relay.run(using)
    command.stdout.write(f"stopped after {relay.drains} drain(s), {relay.rows_applied} applied")


handle = with_log_database(_relay)
