"""``stats [--kind KIND] [--json]``: hit ratio per view, fragment and function, busiest first,
from the journal of the default store (this process's buffer flushed first)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from .base import add_json, print_json, table

NAME = "stats"
HELP = "hit ratio per view, fragment and function (from the journal)"
KINDS = ("page", "fragment", "function", "value")


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument("--kind", choices=KINDS, action="append", help="only this kind")
    parser.add_argument("--limit", type=int, default=50, help="rows to show (default 50)")
    add_json(parser)


def read_stats(command: BaseCommand) -> list[Any]:
    """Every name's stats (this process flushed first), with a warning on stderr when the
    journal cannot hold what other processes did. Raises ``CommandError``."""
    from .. import journal
    from ..conf import get_settings
    from ..stores import StoreUnavailable, get_store

    if not get_settings().journal:
        raise CommandError("FRESHCACHE['JOURNAL'] is False: nothing is recorded")
    store = get_store()
    if not store.shared:
        command.stderr.write(command.style.WARNING(
            f"the default store ({store.url}) keeps the journal in each process: this shows "
            "what this command's own process did, not the web processes"
        ))  # fmt: skip
    try:
        journal.flush()
        return journal.stats()
    except StoreUnavailable as exc:
        raise CommandError(f"the journal cannot be read: {exc}") from exc


def ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def top_reason(reasons: dict[str, int]) -> str:
    if not reasons:
        return ""
    reason, count = max(reasons.items(), key=lambda kv: (kv[1], kv[0]))
    more = f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""
    return f"{reason} x{count}{more}"


def handle(command: BaseCommand, options: dict[str, Any]) -> None:
    found = [s for s in read_stats(command) if not options["kind"] or s.kind in options["kind"]]
    shown = found[: max(options["limit"], 0)]
    if options["json"]:
        print_json(command, [
            {"kind": s.kind, "name": s.name, "requests": s.requests, "hits": s.hits,
             "misses": s.misses, "stored": s.stored, "bypasses": s.bypasses,
             "hit_ratio": s.hit_ratio, "seconds": round(s.seconds, 6), "reasons": s.reasons}
            for s in shown
        ])  # fmt: skip
        return
    if not shown:
        command.stdout.write("nothing recorded yet")
        return
    rows = []
    styles = []
    for s in shown:
        computed = s.misses + s.bypasses
        avg = f"{s.seconds / computed * 1000:.1f}" if computed else "-"
        rows.append([s.kind, s.name, str(s.requests), str(s.hits), str(s.misses), str(s.stored),
                     str(s.bypasses), ratio(s.hit_ratio), avg, top_reason(s.reasons)])  # fmt: skip
        never = (s.misses or s.bypasses) and not s.stored and not s.hits
        styles.append(command.style.WARNING if never else None)
    header = ["kind", "name", " requests", " hits", " misses", " stored", " bypasses",
              " hit ratio", " ms/miss", "not stored because"]  # fmt: skip
    table(command, header, rows, styles)
    if len(found) > len(shown):
        command.stdout.write(f"... and {len(found) - len(shown)} more (--limit)")
