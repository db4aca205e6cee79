"""``invalidate TAG|app.Model|app.Model:pk ...``: bump through ``freshcache.invalidate``.

A tag is given as stored (``blog.post:3``, ``weather:london``); ``app.Model`` (the model's name
capitalised, as in ``blog.Post``) is its whole table, ``app.Model:pk`` one row (with the
predicate tags of its current values when the row exists).
"""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from .base import add_json, print_json

NAME = "invalidate"
HELP = "invalidate tags, models (app.Model) or rows (app.Model:pk)"
_MODEL = re.compile(r"^([A-Za-z_]\w*)\.([A-Z]\w*)(?::(.+))?$")


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument("items", nargs="+", metavar="TAG|app.Model|app.Model:pk")
    add_json(parser)


def parse(text: str) -> tuple[Any, str]:
    """What ``text`` names (a tag, a model class, an instance) and how to say it."""
    from django.apps import apps

    from ..tags import normalize_tag, predicate_tag

    match = _MODEL.match(text)
    if match is None:
        try:
            return normalize_tag(text), "tag"
        except (TypeError, ValueError) as exc:
            raise CommandError(f"{text!r}: {exc}") from exc
    label, name, pk = match.groups()
    try:
        model = apps.get_model(label, name)
    except LookupError as exc:
        known = sorted(m._meta.label for m in apps.get_models() if m._meta.app_label == label)
        hint = f"; {label} has: {', '.join(known)}" if known else f"; no installed app {label!r}"
        raise CommandError(f"{text!r}: no model {label}.{name}{hint}") from exc
    if pk is None:
        return model, "every row of"
    meta = model._meta
    try:
        value = meta.pk.to_python(pk) if meta.pk is not None else pk
    except ValidationError as exc:
        raise CommandError(f"{text!r}: {pk!r} is not a primary key of {meta.label}") from exc
    row = model._default_manager.filter(pk=value).first()
    if row is not None:
        return row, "the row"
    # Deleted (or never there): its instance tag still names what was cached from it.
    concrete = meta.concrete_model or model
    return predicate_tag(concrete, concrete._meta.pk.column, value), "no such row now; its tag"


def handle(command: BaseCommand, options: dict[str, Any]) -> None:
    from .. import events
    from ..invalidation import _tags, invalidate

    parsed = [(text, *parse(text)) for text in options["items"]]
    _check_stores(command)
    seen: list[events.Invalidation] = []

    def listen(event: Any) -> None:
        if isinstance(event, events.Invalidation):
            seen.append(event)

    events.subscribe(listen)
    try:
        invalidate(*(item for _, item, _ in parsed))
    finally:
        events.unsubscribe(listen)
    failed = any(e.failed for e in seen)
    report = [
        {"given": text, "what": what, "tags": sorted(_tags([item]))} for text, item, what in parsed
    ]
    if options["json"]:
        print_json(command, {"invalidated": report, "failed": failed})
    else:
        for row in report:
            tags = ", ".join(row["tags"])
            command.stdout.write(f"{row['given']} ({row['what']}): {tags}")
        bumped = len({t for row in report for t in row["tags"]})
        if not failed:
            command.stdout.write(command.style.SUCCESS(f"{bumped} tag(s) bumped on every store"))
    if failed:
        raise CommandError(_failed_message())


def _logged() -> bool:
    from ..conf import get_settings
    from ..log import is_active

    using = get_settings().log_database
    return using is not None and is_active(using)


def _check_stores(command: BaseCommand) -> None:
    """Refuse to start when a store is down and no invalidation log would keep the bump
    (it would be lost with this process); warn about stores that live in each process."""
    from ..stores import StoreUnavailable, all_stores

    for store in all_stores():
        if not store.shared:
            command.stderr.write(command.style.WARNING(
                f"{store.name}: {store.url} lives in each process: only this command's own is "
                "bumped, not the web processes'"
            ))  # fmt: skip
            continue
        try:
            store.begin()
        except StoreUnavailable as exc:
            if not _logged():
                raise CommandError(
                    f"store {store.name!r} cannot be reached and no invalidation log would keep "
                    f"the bump: nothing was invalidated ({exc})"
                ) from exc


def _failed_message() -> str:
    if _logged():
        return ("a store did not take the bump; it waits in the invalidation log and a relay "
                "applies it when the store answers (`manage.py freshcache log`)")  # fmt: skip
    return "a store did not take the bump and no invalidation log keeps it: run it again"
