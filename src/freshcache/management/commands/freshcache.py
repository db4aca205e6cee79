"""``manage.py freshcache <command>``: freshcache's tools (``freshcache/commands/``, one module
per subcommand; docs/observability.md, "Commands")."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = (
        "freshcache tools: inspect, why, stats, doctor, invalidate, clear, log, relay, "
        "changefeed install|uninstall|status, purges, publish."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        from ...commands import add_arguments

        add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        from ...commands import handle

        handle(self, options)
