"""``log [--json]``: how many invalidation-log rows wait, the oldest one's age, and the trigger
state (``doctor`` reports the same backlog)."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from .base import add_json, print_json, with_log_database

NAME = "log"
HELP = "the invalidation log's backlog"


def add_arguments(parser: CommandParser) -> None:
    add_json(parser)
    parser.add_argument("--database", default=None, help="the log database alias")


def backlog(using: str) -> dict[str, Any]:
    """The log's backlog on ``using``: rows waiting, the oldest one's age in seconds, and
    whether every table has current triggers. Raises ``CommandError`` (no log table) and
    ``DatabaseError``."""
    from ..log import ready, triggers

    if not ready(using):
        raise CommandError(f"no freshcache_log table on {using!r}: run `manage.py migrate`")
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT count(*), min(created) FROM freshcache_log")
        count, oldest = cursor.fetchone()
    age = None
    if oldest is not None and hasattr(oldest, "timestamp"):
        age = round(max(0.0, time.time() - oldest.timestamp()), 3)
    states = triggers.status(using)
    missing = [s.table for s in states if s.state in ("missing", "outdated")]
    return {
        "database": using,
        "waiting": int(count),
        "oldest_seconds": age,
        "triggers": "n/a" if connections[using].vendor != "postgresql" else (
            "ok" if not missing else f"missing on {', '.join(missing)}"
        ),
    }  # fmt: skip


def _log(command: BaseCommand, using: str, options: dict[str, Any]) -> None:
    report = backlog(using)
    if options["json"]:
        print_json(command, report)
        return
    for key, value in report.items():
        command.stdout.write(f"{key:<15} {value}")


handle = with_log_database(_log)
