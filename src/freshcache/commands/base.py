"""What every ``manage.py freshcache`` subcommand shares: how it is declared, how it prints.

A subcommand is a module with ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``handle(command, options)``; ``commands/__init__.py`` lists them. Errors are raised as
``CommandError`` with a message that says what to do; ``--json`` prints one JSON document and
nothing else on stdout; long work shows a progress bar on stderr (never mixed into ``--json``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connections

__all__ = [
    "Progress",
    "add_json",
    "log_database",
    "print_json",
    "store_error",
    "table",
    "with_log_database",
]


def add_json(parser: CommandParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def print_json(command: BaseCommand, data: Any) -> None:
    command.stdout.write(json.dumps(data, indent=2, default=str))


def table(
    command: BaseCommand,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    styles: Sequence[Callable[[str], str] | None] | None = None,
) -> None:
    """Print ``rows`` under ``header``, columns padded (before styling: escape codes have no
    width). Columns whose header starts with a space are right-aligned."""
    widths = [len(h.strip()) for h in header]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str], style: Callable[[str], str] | None = None) -> str:
        out = []
        for h, w, cell in zip(header, widths, cells, strict=True):
            out.append(cell.rjust(w) if h.startswith(" ") else cell.ljust(w))
        text = "  ".join(out).rstrip()
        return style(text) if style else text

    command.stdout.write(line([h.strip() for h in header], command.style.MIGRATE_HEADING))
    for i, row in enumerate(rows):
        command.stdout.write(line(row, styles[i] if styles else None))


class Progress:
    """A progress bar on stderr for work of ``total`` steps, drawn only on a terminal (a
    script's captured output stays clean)."""

    WIDTH = 30

    def __init__(self, command: BaseCommand, total: int, what: str) -> None:
        self.command, self.total, self.what = command, max(total, 1), what
        stream = getattr(command.stderr, "_out", command.stderr)
        self.on = total > 1 and bool(getattr(stream, "isatty", lambda: False)())
        self.done = 0

    def step(self, label: str = "") -> None:
        self.done += 1
        if not self.on:
            return
        filled = self.WIDTH * self.done // self.total
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        sys.stderr.write(f"\r{self.what} [{bar}] {self.done}/{self.total} {label[:40]:<40}")
        if self.done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def store_error(name: str, exc: BaseException) -> CommandError:
    return CommandError(f"store {name!r} cannot be reached: {exc}")


def log_database(options: dict[str, Any]) -> str:
    """The alias of the invalidation log's database (``--database`` or ``LOG_DATABASE``)."""
    from ..conf import get_settings

    using = options.get("database") or get_settings().log_database
    if using is None:
        raise CommandError("FRESHCACHE['LOG_DATABASE'] is None: the invalidation log is off")
    if using not in connections:
        raise CommandError(f"no database {using!r} in DATABASES")
    return str(using)


def with_log_database(
    handle: Callable[[BaseCommand, str, dict[str, Any]], None],
) -> Callable[[BaseCommand, dict[str, Any]], None]:
    """``handle(command, using, options)`` on the log's database; its errors as CommandError."""

    def run(command: BaseCommand, options: dict[str, Any]) -> None:
        using = log_database(options)
        try:
            handle(command, using, options)
        except DatabaseError as exc:
            raise CommandError(f"database {using!r}: {exc}") from exc

    return run
