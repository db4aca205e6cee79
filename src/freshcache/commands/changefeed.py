"""``changefeed install|uninstall|status``: the PostgreSQL triggers that log writes from every
writer (``migrate`` installs them by itself; re-run ``install`` after changing models by hand)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from .base import add_json, with_log_database

NAME = "changefeed"
HELP = "PostgreSQL triggers feeding the log"


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument("action", choices=["install", "uninstall", "status"])
    add_json(parser)
    parser.add_argument("--database", default=None, help="the log database alias")


def _changefeed(command: BaseCommand, using: str, options: dict[str, Any]) -> None:
    from ..log import ready, reset, triggers

    action = options["action"]
    if connections[using].vendor != "postgresql":
        raise CommandError(
            f"database {using!r} is {connections[using].vendor}: triggers need PostgreSQL; "
            "freshcache logs the writes made through Django there (see docs/outside-writes.md)"
        )
    if action == "uninstall":
        n = triggers.uninstall(using)
        reset()
        command.stdout.write(f"removed the triggers of {n} table(s)")
        return
    if not ready(using):
        raise CommandError(f"no freshcache_log table on {using!r}: run `manage.py migrate`")
    states = triggers.install(using) if action == "install" else triggers.status(using)
    reset()
    if options["json"]:
        found = [{"table": s.table, "state": s.state, "columns": s.columns} for s in states]
        command.stdout.write(json.dumps(found, indent=2))
        return
    width = max((len(s.table) for s in states), default=5)
    for s in states:
        style = command.style.SUCCESS if s.state == "ok" else command.style.WARNING
        cols = ", ".join(s.columns)
        # Padded before colouring: the escape codes would count as width.
        command.stdout.write(f"{s.table:<{width}}  {style(f'{s.state:<11}')} {cols}")
    bad = sum(1 for s in states if s.state in ("missing", "outdated"))
    if bad:
        command.stdout.write(
            command.style.WARNING(
                f"{bad} table(s) without current triggers: run "
                "`manage.py freshcache changefeed install`"
            )
        )
    elif action == "install":
        command.stdout.write(command.style.SUCCESS(f"triggers installed on {len(states)} table(s)"))


handle = with_log_database(_changefeed)
