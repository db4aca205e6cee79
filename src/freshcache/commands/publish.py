"""``publish [PATH ...] [--sitemap PATH]``: render pages through the project in this process so
that those ``EDGE["PUBLISH"]`` covers are written for the web server (docs/edge.md)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from .base import add_json

NAME = "publish"
HELP = "pre-render pages for static publishing"


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument("paths", nargs="*", help="paths to render, such as / or /post/7/")
    parser.add_argument("--sitemap", help="a sitemap path of this site, such as /sitemap.xml")
    parser.add_argument("--host", default=None, help="the Host header (default: the "
                        "first of ALLOWED_HOSTS, or localhost)")  # fmt: skip
    add_json(parser)


def handle(command: BaseCommand, options: dict[str, Any]) -> None:
    from ..conf import get_settings
    from ..edge.prerender import default_host, paths_of_sitemap, prerender

    if get_settings().edge.publish is None:
        raise CommandError("FRESHCACHE['EDGE']['PUBLISH'] is not set: nothing is published")
    host = options["host"] or default_host()
    paths = list(options["paths"])
    if options["sitemap"]:
        try:
            paths += paths_of_sitemap(options["sitemap"], host)
        except ValueError as exc:
            raise CommandError(f"sitemap: {exc}") from exc
    if not paths:
        raise CommandError("give paths to render, or --sitemap")
    total = len(dict.fromkeys(paths))
    width = 30

    def progress(index: int, rendered: Any) -> None:
        if options["json"]:
            return
        filled = width * (index + 1) // total
        bar = "#" * filled + "-" * (width - filled)
        line = f"[{bar}] {index + 1}/{total} {rendered.path}: {rendered.result}"
        command.stdout.write(line + (f" ({rendered.reason})" if rendered.reason else ""))

    results = prerender(paths, host, progress)
    published = sum(r.result == "published" for r in results)
    if options["json"]:
        command.stdout.write(json.dumps([vars(r) for r in results], indent=2))
    else:
        command.stdout.write(command.style.SUCCESS(f"{published} of {total} page(s) published"))
    if any(r.result == "failed" for r in results):
        raise CommandError("some pages failed to render")
