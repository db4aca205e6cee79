"""``inspect URL|KEY [--host H] [--header 'Name: value'] [--store NAME] [--json]``: whether a
page (or any cached value) is in the store, its size, its tags with their stored and current
versions, and why it would or would not be served now."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from .base import add_json, print_json, table
from .pages import Target, entry_of, target_of

NAME = "inspect"
HELP = "is a URL or key cached, with which tags, and would it be served"


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument("target", metavar="URL|KEY", help="a path (/post/7/), a URL or a key")
    add_target_options(parser)
    add_json(parser)


def add_target_options(parser: CommandParser) -> None:
    parser.add_argument("--host", default=None, help="the Host of the request (default: the "
                        "URL's, else the first of ALLOWED_HOSTS)")  # fmt: skip
    parser.add_argument("--header", action="append", metavar="'NAME: VALUE'",
                        help="a request header (for pages that vary on it)")  # fmt: skip
    parser.add_argument("--server", default=None, metavar="NAME:PORT", help="SERVER_NAME and "
                        "SERVER_PORT as your WSGI/ASGI server passes them (page keys include "
                        "them; default testserver:80, as Django's test client)")  # fmt: skip
    parser.add_argument("--language", default=None, help="the language the page is in (default: "
                        "as LocaleMiddleware would choose it, if installed, else "
                        "LANGUAGE_CODE)")  # fmt: skip
    parser.add_argument("--store", default=None, help="the store of a KEY (default: default)")


def view_reasons(target: Target) -> dict[str, int]:
    """The reasons the journal counted for not storing ``target``'s view (most first); empty
    when there is no view, no journal, or it cannot be read."""
    from .. import journal
    from ..conf import get_settings
    from ..stores import StoreUnavailable

    if target.view is None or not get_settings().journal:
        return {}
    try:
        journal.flush()
        found = [s for s in journal.stats() if s.kind == "page" and s.name == target.view]
    except StoreUnavailable:
        return {}
    reasons = found[0].reasons if found else {}
    return dict(sorted(reasons.items(), key=lambda kv: -kv[1]))


def verdict(entry: Any) -> tuple[str, str]:
    """``(state, why)``: ``valid``, ``moved``, ``expired``, ``old epoch`` or ``not cached``."""
    if entry is None:
        return "not cached", "nothing is stored under this key"
    if not entry.same_epoch:
        return "old epoch", "stored before the store was cleared or restarted: it misses"
    if entry.expired:
        return "expired", "its TIMEOUT has passed: the next request renders it again"
    moved = entry.moved
    if moved:
        first = moved[0]
        now = entry.current.get(first)
        what = "has no version any more (evicted or flushed)" if now is None else (
            f"moved from {entry.versions[first]} to {now}"
        )  # fmt: skip
        more = f" (and {len(moved) - 1} more)" if len(moved) > 1 else ""
        return "moved", f"tag {first} {what}{more}: the next request renders it again"
    return "valid", "a request now is served this entry"


def report(target: Target) -> dict[str, Any]:
    from ..http.page import Page

    out: dict[str, Any] = {"given": target.given}
    if target.url is not None:
        out.update(url=target.url, view=target.view, cached_by=target.how)
    if target.uncached is not None:
        out.update(state="not cached", why=target.uncached, reasons=view_reasons(target))
        return out
    store, entry, value = entry_of(target)
    state, why = verdict(entry)
    out.update(key=target.key, stored_key=target.skey, store=store.name, state=state, why=why)
    if target.vary:
        out["vary"] = list(target.vary)
    if entry is None:
        out["reasons"] = view_reasons(target)
        if target.url is not None:
            out["note"] = ("page keys include the Host, SERVER_NAME and SERVER_PORT as sent: "
                           "for a production page, give --host and --server")  # fmt: skip
        return out
    out["size"] = len(entry.payload)
    out["expires_in"] = None if entry.expires_in is None else round(entry.expires_in, 1)
    if isinstance(value, Page):
        content_type = next((v for k, v in value.headers if k.lower() == "content-type"), None)
        out.update(status=value.status, content_type=content_type, body_bytes=len(value.body))
    elif value is None and target.key is not None:
        out["note"] = "the payload cannot be verified here (another SECRET_KEY?): a lookup misses"
    out["tags"] = [
        {"tag": tag, "stored": version, "current": entry.current.get(tag)}
        for tag, version in sorted(entry.versions.items())
    ]
    return out


def handle(command: BaseCommand, options: dict[str, Any]) -> None:
    from .clear import store_names

    if options["store"]:
        store_names([options["store"]])
    found = report(target_of(options["target"], options))
    if options["json"]:
        print_json(command, found)
        return
    write(command, found)


def write(command: BaseCommand, found: dict[str, Any]) -> None:
    style = command.style
    line = command.stdout.write
    if "url" in found:
        line(f"url        {found['url']}")
        by = f" (cached by {found['cached_by']})" if found.get("cached_by") else ""
        line(f"view       {found['view']}{by}")
    if "key" in found:
        line(f"key        {found['key'] or '-'}")
        line(f"stored as  {found['stored_key']} in store {found['store']!r}")
    if found.get("vary"):
        line(f"varies on  {', '.join(found['vary'])} (followed the stored Vary marker)")
    colour = {"valid": style.SUCCESS, "not cached": style.WARNING}.get(found["state"], style.ERROR)
    line(f"state      {colour(found['state'])}: {found['why']}")
    if "size" in found:
        what = ""
        if "status" in found:
            what = f" (status {found['status']}, {found['content_type'] or 'no content type'}, " \
                   f"body {found['body_bytes']} bytes)"  # fmt: skip
        line(f"size       {found['size']} bytes{what}")
        expires = found["expires_in"]
        line(f"expires    {'never' if expires is None else f'in {expires:g} s'}")
    if found.get("note"):
        line(style.WARNING(f"note       {found['note']}"))
    if found.get("tags"):
        rows = [[t["tag"], t["stored"], t["current"] or "none"] for t in found["tags"]]
        moved = [None if t["current"] == t["stored"] else style.ERROR for t in found["tags"]]
        table(command, ["tag", "stored version", "current version"], rows, moved)
    if found.get("reasons"):
        line("not stored because (journal, this view):")
        for reason, count in found["reasons"].items():
            line(f"  {count:>5} x {reason}")
