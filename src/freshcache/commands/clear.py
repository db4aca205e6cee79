"""``clear [--store NAME]``: make every entry of the stores miss (after a deploy that changes
what cached code or templates output: code is not a dependency). A ``memory://`` store lives in
each web process and cannot be cleared from here."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

NAME = "clear"
HELP = "make every cached entry miss (after a deploy)"


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument(
        "--store", action="append", default=None, help="a store name (default: all)"
    )


def store_names(names: list[str] | None) -> list[str]:
    """``names`` checked against ``FRESHCACHE["STORES"]`` (default: every store, sorted)."""
    from ..conf import get_settings

    known = get_settings().stores
    unknown = [n for n in names or () if n not in known]
    if unknown:
        raise CommandError(
            f"no store named {', '.join(map(repr, unknown))}; FRESHCACHE['STORES'] has: "
            f"{', '.join(sorted(known))}"
        )
    return list(names or sorted(known))


def handle(command: BaseCommand, options: dict[str, Any]) -> None:
    from ..conf import get_settings
    from ..stores import StoreUnavailable, get_store

    known = get_settings().stores
    failed = []
    for name in store_names(options["store"]):
        store = get_store(name)
        if not store.shared:
            command.stdout.write(
                command.style.WARNING(
                    f"{name}: {known[name]} lives in each process; restart them to clear it"
                )
            )
            continue
        try:
            store.clear()
        except StoreUnavailable as exc:
            failed.append(name)
            command.stderr.write(f"{name}: not cleared: {exc}")
            continue
        command.stdout.write(command.style.SUCCESS(f"{name}: cleared"))
    if get_settings().edge.publish is not None:
        from django.db import DatabaseError

        from ..edge.publish import unpublish_all

        try:
            command.stdout.write(f"published files: {unpublish_all()} deleted")
        except DatabaseError as exc:
            raise CommandError(
                f"published files not deleted: their index cannot be read ({exc}); run "
                "`manage.py migrate freshcache` if freshcache_published does not exist"
            ) from exc
        except OSError as exc:
            raise CommandError(f"published files not all deleted: {exc}") from exc
    if failed:
        raise CommandError(f"{len(failed)} store(s) could not be cleared")
