"""``why URL|TAG [--limit N] [--json]``: the most recent invalidations that hit a page or a tag
(which tag, what asked for it, when, from which process), from the journal's ring.

For a URL, its tags are the stored entry's (``inspect``'s); a URL that is not cached has no
tags to match, so its view's not-stored reasons are shown instead, with the invalidations of
the URL's own tag (``url:/path/``, which ``invalidate(url_tag)`` bumps).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from .base import add_json, print_json, table
from .inspect import add_target_options, view_reasons
from .pages import entry_of, is_url, target_of

NAME = "why"
HELP = "the recent invalidations that hit a URL or a tag"


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument("target", metavar="URL|TAG", help="a path (/post/7/), a URL or a tag "
                        "(blog.post:7, app.Model:pk)")  # fmt: skip
    parser.add_argument("--limit", type=int, default=10, help="invalidations to show (10)")
    add_target_options(parser)
    add_json(parser)


def _tags_of(options: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    from ..http.keys import url_tag

    given = options["target"]
    if not is_url(given):
        from ..invalidation import _tags
        from .invalidate import parse

        item, what = parse(given)
        tags = _tags([item])
        return {"given": given, "what": what, "tags": sorted(tags)}, tags
    target = target_of(given, options)
    out: dict[str, Any] = {"given": given, "url": target.url, "view": target.view}
    if target.uncached is not None:
        out.update(cached=False, why=target.uncached, reasons=view_reasons(target))
        return out, set()
    _, entry, _ = entry_of(target)
    if entry is None:
        out.update(cached=False, why="nothing is stored for it now", reasons=view_reasons(target))
        tags = {url_tag(target.url or given)}
    else:
        tags = set(entry.versions)
        out.update(cached=True, moved=entry.moved)
    out["tags"] = sorted(tags)
    return out, tags


def handle(command: BaseCommand, options: dict[str, Any]) -> None:
    from .. import journal
    from ..conf import get_settings
    from ..stores import StoreUnavailable

    if not get_settings().journal:
        raise CommandError("FRESHCACHE['JOURNAL'] is False: invalidations are not recorded")
    found, tags = _tags_of(options)
    hits: list[Any] = []
    if tags:
        try:
            journal.flush()
            hits = journal.invalidations(limit=max(options["limit"], 1), touching=tags)
        except StoreUnavailable as exc:
            raise CommandError(f"the journal cannot be read: {exc}") from exc
    found["invalidations"] = [
        {"at": r.at, "source": r.source, "origin": r.origin, "hit": sorted(tags & set(r.tags)),
         "tag_count": r.tag_count, "failed": r.failed}
        for r in hits
    ]  # fmt: skip
    if options["json"]:
        print_json(command, found)
        return
    write(command, found)


def _when(at: float) -> str:
    ago = max(0.0, time.time() - at)
    stamp = datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")
    return f"{stamp} ({ago:.0f}s ago)"


def write(command: BaseCommand, found: dict[str, Any]) -> None:
    line = command.stdout.write
    if "url" in found:
        line(f"url    {found['url']}  (view {found['view']})")
        if not found.get("cached"):
            line(command.style.WARNING(f"not cached: {found['why']}"))
            for reason, count in found.get("reasons", {}).items():
                line(f"  {count:>5} x {reason}")
        elif found["moved"]:
            line(command.style.ERROR(f"stored, but tags moved since: {', '.join(found['moved'])}"))
    else:
        line(f"tags   {', '.join(found['tags'])}")
    if not found.get("tags"):
        return
    if not found["invalidations"]:
        line(f"no recent invalidation hit {', '.join(found['tags'][:5])}"
             f"{' ...' if len(found['tags']) > 5 else ''}")  # fmt: skip
        return
    rows = []
    for r in found["invalidations"]:
        hit = ", ".join(r["hit"][:3]) + (f" (+{len(r['hit']) - 3})" if len(r["hit"]) > 3 else "")
        source = r["source"] + (" (failed; the log kept it)" if r["failed"] else "")
        rows.append([_when(r["at"]), source, r["origin"], hit, str(r["tag_count"])])
    table(command, ["when", "source", "from", "tags hit", " tags bumped"], rows)
