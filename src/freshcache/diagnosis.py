"""Why a cached thing is never stored, and the fix: shared by ``manage.py freshcache doctor``
and the WARNING logged the first time a render is refused for writing a row it read.

A render that writes a column of a row it read (the classic view counter,
``Post.objects.filter(pk=pk).update(view_count=F("view_count") + 1)`` in the view showing that
post) invalidates itself: it is never stored. Its reason names the fields
(``capture/writes.own_row_reason``: ``"wrote blog.Post.view_count of a row it read"``), and the
fix is one setting line: declaring the column volatile, so that its updates invalidate nothing.
"""

from __future__ import annotations

import json
import logging
import re
import threading

__all__ = ["fix_for", "note", "reset", "volatile_line", "written_fields"]

logger = logging.getLogger("freshcache")

_ROW_IT_READ = re.compile(r"^wrote (.+?)(?: \(\+\d+ more\))? of a row it read$")
#: Reasons a name was not stored, by their start, and what to do about it.
_FIXES = (
    ("wrote to ", "the render writes to the database: move the write out of the cached view "
     "(a POST, a task), or declare the columns it updates in VOLATILE_FIELDS if they are "
     "counters nobody reads"),
    ("request has a session", "pass vary_on_user=True to cache_page to cache one copy per "
     "user, or stop touching the session on this page"),
    ("request has Authorization", "API clients with credentials are never served a shared page"),
    ("sets a cookie", "set cookies outside cached views (middleware above CacheMiddleware)"),
    ("read header", "declare the header with cache_page(vary_on_headers=[...]) or add it to "
     "the response's Vary"),
    ("read the database but depends on no tag", "a query freshcache cannot analyse: see "
     "docs/limits.md, or name the data with depends_on()"),
    ("a dependency changed while computing", "a write committed while it rendered: normal "
     "under heavy writes; if constant, the render itself causes the write"),
    ("too large", "raise FRESHCACHE['MAX_ENTRY_SIZE'] or cache fragments of the page instead"),
    ("store full", "Redis is at maxmemory with noeviction: see `doctor`'s store section"),
    ("transaction has written", "the view writes inside ATOMIC_REQUESTS or atomic(): cached "
     "reads in a transaction that wrote are never stored"),
    ("status ", "only FRESHCACHE['CACHE_STATUSES'] (200 by default) are stored; "
     "cache_page(statuses=[...]) opts a view in"),
)  # fmt: skip

_lock = threading.Lock()
_warned: set[tuple[str, str, str]] = set()


def written_fields(reason: str) -> list[str] | None:
    """The ``app_label.Model.field`` labels an "of a row it read" reason names, else ``None``."""
    match = _ROW_IT_READ.match(reason)
    return match.group(1).split(", ") if match else None


def volatile_line(fields: list[str]) -> str:
    """The exact settings line that makes ``fields`` volatile, with those already declared."""
    from .conf import get_settings

    declared = list(get_settings().volatile_fields)
    known = {f.lower() for f in declared}
    merged = declared + [f for f in fields if f.lower() not in known]
    return f'FRESHCACHE["VOLATILE_FIELDS"] = {json.dumps(merged)}'


def fix_for(reason: str) -> str | None:
    """What to do about ``reason`` (the exact settings line for a view counter)."""
    fields = written_fields(reason)
    if fields is not None:
        return (
            f"if {' and '.join(fields)} only counts, add to settings.py: "
            f"{volatile_line(fields)}{_reinstall()}"
        )
    for start, fix in _FIXES:
        if reason.startswith(start):
            return fix
    return None


def note(kind: str, name: str, reason: str) -> None:
    """Called for every result not stored: the first time per process that ``kind``/``name``
    is refused for writing a row it read (per reason), log the diagnosis at WARNING."""
    fields = written_fields(reason)
    if fields is None:
        return
    key = (kind, name, reason)
    with _lock:
        if key in _warned:
            return
        _warned.add(key)
    logger.warning(
        "freshcache: %s %r is never stored: its render %s, so it invalidates itself. If that "
        "column only counts (views, visits), add to settings.py: %s%s",
        kind,
        name,
        reason,
        volatile_line(fields),
        _reinstall(),
    )


def _reinstall() -> str:
    """With PostgreSQL log triggers: they must learn of the new volatile column too (their
    ``UPDATE`` of it alone would otherwise reach the relay, which invalidates the row)."""
    from django.db import connections

    from .conf import get_settings

    using = get_settings().log_database
    try:
        if using is None or connections[using].vendor != "postgresql":
            return ""
    except Exception:
        return ""
    return "; then run: python manage.py freshcache changefeed install"


def reset() -> None:
    """Forget which diagnoses were logged (tests; each is then logged once more)."""
    with _lock:
        _warned.clear()
