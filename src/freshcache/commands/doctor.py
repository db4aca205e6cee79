"""``doctor [--json]``: what stands between this site and its cache, each with the fix.

1. **settings**: freshcache's system checks (``freshcache.E…``/``W…``, docs/checks.md);
2. **stores**: each store reached with a ``begin()`` round trip (its latency), and a Redis
   memory limit its eviction policy cannot keep (``freshcache.W006``'s rule);
3. **invalidation log**: rows waiting for a relay, and the oldest one's age (``log``);
4. **never stored**: views, fragments and functions the journal saw computed and never
   stored, each reason with its fix — for a render that writes a column of a row it read (a
   view counter), the exact ``VOLATILE_FIELDS`` line (``diagnosis.py``).

Exits non-zero when something is broken (a check error, a store that cannot be reached).
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from .base import Progress, add_json, print_json

NAME = "doctor"
HELP = "settings, store health, eviction policy, log backlog, and views never stored"
#: A log row older than this (seconds) means no relay is applying the log.
LOG_LATE = 10.0


def add_arguments(parser: CommandParser) -> None:
    add_json(parser)


def _checks() -> list[dict[str, Any]]:
    from django.core import checks

    found = [m for m in checks.run_checks() if str(m.id or "").startswith("freshcache.")]
    return [
        {"level": "error" if m.is_serious() else "warning", "id": m.id, "message": str(m.msg),
         "hint": m.hint}
        for m in found
    ]  # fmt: skip


def _store(name: str, url: str) -> dict[str, Any]:
    from ..checks.stores import _check_eviction
    from ..stores import get_store, redacted

    shown = redacted(url)
    out: dict[str, Any] = {"store": name, "url": shown}
    try:
        store = get_store(name)
        started = time.perf_counter()
        store.begin()
        out["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
        out["ok"] = True
    except Exception as exc:  # StoreUnavailable, or a store that cannot even be built
        out.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        return out
    if not store.shared:
        out["note"] = "lives in each process: not shared by workers, commands see their own"
    memory = getattr(store, "memory_config", None)
    config = memory() if callable(memory) else None
    if config is not None:
        out["maxmemory"], out["policy"] = config.maxmemory, config.policy
        warnings = _check_eviction(name, shown, store)
        if warnings:
            out["warning"] = f"{warnings[0].msg} {warnings[0].hint}"
        elif config.maxmemory and config.policy.startswith("allkeys-"):
            out["note"] = ("allkeys-* may evict tag versions and the sequence: safe (misses "
                           "only); volatile-lru keeps the sequence")  # fmt: skip
    return out


def _log() -> dict[str, Any] | None:
    from ..conf import get_settings
    from ..log import is_active
    from .log import backlog

    using = get_settings().log_database
    if using is None or not is_active(using):
        return None
    try:
        report = backlog(using)
    except Exception as exc:  # DatabaseError, CommandError: reported, not raised
        return {"database": using, "error": str(exc)}
    late = (report["oldest_seconds"] or 0) > LOG_LATE
    if late:
        report["warning"] = ("rows wait longer than a relay takes: is every store reachable? "
                             "`manage.py freshcache relay --once` applies them")  # fmt: skip
    return report


def _never_stored() -> tuple[list[dict[str, Any]], str | None]:
    from .. import journal
    from ..conf import get_settings
    from ..diagnosis import fix_for
    from ..stores import StoreUnavailable

    if not get_settings().journal:
        return [], "FRESHCACHE['JOURNAL'] is False: nothing is recorded"
    try:
        journal.flush()
        stats = journal.stats()
    except StoreUnavailable as exc:
        return [], f"the journal cannot be read: {exc}"
    if not stats:
        return [], "nothing recorded yet (no request since the journal was reset, or a " \
            "memory:// store: each process keeps its own)"
    out = []
    for s in stats:
        # Bypasses too: a view every request of which has a session is never stored either.
        if (s.misses or s.bypasses) and not s.stored:
            reasons = sorted(s.reasons.items(), key=lambda kv: -kv[1])
            out.append({
                "kind": s.kind, "name": s.name, "misses": s.misses + s.bypasses,
                "reasons": [{"reason": r, "count": n, "fix": fix_for(r)} for r, n in reasons],
            })  # fmt: skip
    return out, None


def diagnose(progress: Progress | None = None) -> dict[str, Any]:
    from ..conf import get_settings

    def step(label: str) -> None:
        if progress is not None:
            progress.step(label)

    report: dict[str, Any] = {"checks": _checks()}
    step("checks")
    report["stores"] = []
    for name, url in get_settings().stores.items():
        report["stores"].append(_store(name, url))
        step(name)
    report["log"] = _log()
    step("log")
    report["never_stored"], report["journal_error"] = _never_stored()
    step("journal")
    report["errors"] = sum(c["level"] == "error" for c in report["checks"]) + sum(
        not s["ok"] for s in report["stores"]
    )
    return report


def handle(command: BaseCommand, options: dict[str, Any]) -> None:
    from ..conf import get_settings

    total = 3 + len(get_settings().stores)
    report = diagnose(None if options["json"] else Progress(command, total, "doctor"))
    if options["json"]:
        print_json(command, report)
    else:
        write(command, report)
    if report["errors"]:
        raise CommandError(f"{report['errors']} problem(s) found: see above")


def write(command: BaseCommand, report: dict[str, Any]) -> None:
    style, line = command.style, command.stdout.write
    ok, warn, bad = style.SUCCESS("ok"), style.WARNING("warning"), style.ERROR("error")
    line(style.MIGRATE_HEADING("Settings"))
    if not report["checks"]:
        line(f"  {ok}: no freshcache check reports anything")
    for c in report["checks"]:
        line(f"  {bad if c['level'] == 'error' else warn}: {c['id']}: {c['message']}")
        if c["hint"]:
            line(f"      fix: {c['hint']}")
    line(style.MIGRATE_HEADING("Stores"))
    for s in report["stores"]:
        if not s["ok"]:
            line(f"  {bad}: {s['store']} ({s['url']}) cannot be reached: {s['error']}")
            continue
        line(f"  {ok}: {s['store']} ({s['url']}) answered in {s['latency_ms']} ms")
        if "policy" in s:
            limit = s["maxmemory"] or "no limit"
            line(f"      Redis maxmemory {limit}, maxmemory-policy {s['policy']}")
        if "warning" in s:
            line(f"  {warn}: {s['warning']}")
        if "note" in s:
            line(f"      note: {s['note']}")
    line(style.MIGRATE_HEADING("Invalidation log"))
    log = report["log"]
    if log is None:
        line("  off (FRESHCACHE['LOG_DATABASE'], or no log table: `manage.py migrate`)")
    elif "error" in log:
        line(f"  {bad}: database {log['database']!r}: {log['error']}")
    else:
        age = "-" if log["oldest_seconds"] is None else f"{log['oldest_seconds']:g} s"
        state = warn if "warning" in log else ok
        line(f"  {state}: {log['waiting']} row(s) waiting, oldest {age}; triggers "
             f"{log['triggers']}")  # fmt: skip
        if "warning" in log:
            line(f"      {log['warning']}")
    line(style.MIGRATE_HEADING("Never stored"))
    if report["journal_error"]:
        line(f"  {warn}: {report['journal_error']}")
    elif not report["never_stored"]:
        line(f"  {ok}: every view, fragment and function computed was stored at least once")
    for n in report["never_stored"]:
        line(f"  {warn}: {n['kind']} {n['name']!r}: computed {n['misses']} time(s), never stored")
        for r in n["reasons"]:
            line(f"      {r['count']} x {r['reason']}")
            if r["fix"]:
                line(f"      fix: {r['fix']}")
