"""The subcommands of ``manage.py freshcache``, one module each.

Inspecting (read only): ``inspect URL|KEY``, ``why URL|TAG``, ``stats``, ``doctor``, ``log``,
``purges``. Acting: ``invalidate``, ``clear``, ``publish``, ``relay``, ``changefeed``. Each module
has ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``handle(command, options)``
(``base.py``); the management command only dispatches.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from . import (
    changefeed,
    clear,
    doctor,
    inspect,
    invalidate,
    log,
    publish,
    purges,
    relay,
    stats,
    why,
)

__all__ = ["SUBCOMMANDS", "add_arguments", "handle"]

_ORDER = (inspect, why, stats, doctor, invalidate, clear, log, relay, changefeed, purges, publish)
SUBCOMMANDS: dict[str, ModuleType] = {m.NAME: m for m in _ORDER}


def add_arguments(parser: CommandParser) -> None:
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, module in SUBCOMMANDS.items():
        # Django's subparsers must be built as CommandParser, for call_command's checks.
        module.add_arguments(sub.add_parser(name, help=module.HELP, description=module.HELP))


def handle(command: BaseCommand, options: dict[str, Any]) -> None:
    SUBCOMMANDS[options["command"]].handle(command, options)
