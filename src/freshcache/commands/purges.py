"""``purges [--json] [--send]``: the edge purge queue per purger: keys pending, the oldest one's
age, keys being sent, the last error and when the next retry is due (``--send``: first send
everything due, as a worker would, and report after). The purge worker itself runs in every web
process and in ``relay``."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from .base import add_json, with_log_database

NAME = "purges"
HELP = "the edge purge queue"


def add_arguments(parser: CommandParser) -> None:
    add_json(parser)
    parser.add_argument("--send", action="store_true", help="send what is due first")
    parser.add_argument("--database", default=None, help="the log database alias")


def _purges(command: BaseCommand, using: str, options: dict[str, Any]) -> None:
    from ..conf import get_settings
    from ..edge import queue
    from ..edge.worker import PurgeWorker

    if "freshcache_purge" not in connections[using].introspection.table_names():
        raise CommandError(f"no freshcache_purge table on {using!r}: run `manage.py migrate`")
    sent = None
    if options["send"]:
        worker = PurgeWorker()
        worker.run(using, once=True)
        sent = {"requests": worker.requests, "purged": worker.purged,
                "error": worker.last_error}  # fmt: skip
    report = queue.status(using)
    if options["json"]:
        payload: dict[str, Any] = {"database": using, "purgers": report}
        if sent is not None:
            payload["sent"] = sent
        command.stdout.write(json.dumps(payload, indent=2))
        return
    if sent is not None:
        command.stdout.write(f"sent {sent['requests']} request(s), {sent['purged']} key(s) "
                             "purged")  # fmt: skip
    if not report:
        command.stdout.write("no purgers configured (FRESHCACHE['EDGE']['PURGERS']) and none "
                             "queued")  # fmt: skip
    for row in report:
        name = row["purger"] + ("" if row["configured"] else " (not configured)")
        age = "-" if row["oldest_seconds"] is None else f"{row['oldest_seconds']:.3f}s"
        retry = row["next_retry_seconds"]
        command.stdout.write(
            f"{name}: {row['pending']} pending, oldest {age}, {row['sending']} sending, "
            f"{row['settling']} settling, "
            f"next retry {'-' if retry is None else f'in {retry:.3f}s'}, "
            f"last error {row['last_error'] or '-'}"
        )
    if not get_settings().edge.purgers and any(r["pending"] for r in report):
        command.stdout.write(command.style.WARNING("keys wait for purgers no longer configured"))


handle = with_log_database(_purges)
