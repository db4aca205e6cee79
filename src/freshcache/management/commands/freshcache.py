"""``manage.py freshcache <command>``: freshcache's tools.

* ``changefeed install|uninstall|status``: the PostgreSQL triggers that log writes from every
  writer (``migrate`` installs them by itself; re-run ``install`` after changing models by hand).
* ``relay``: apply the invalidation log to the stores in this process until stopped
  (``--once``: until the log is empty), for deployments that want a dedicated relay.
* ``log``: how many log rows wait, the oldest one's age, and the trigger state.
* ``clear [--store NAME]``: make every entry of the stores miss (after a deploy that changes
  what cached code or templates output: code is not a dependency). A ``memory://`` store lives
  in each web process and cannot be cleared from here.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connections


class Command(BaseCommand):
    help = "freshcache tools: changefeed install|uninstall|status, relay, log, clear."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="command", required=True, metavar="command")
        feed = sub.add_parser("changefeed", help="PostgreSQL triggers feeding the log")
        feed.add_argument("action", choices=["install", "uninstall", "status"])
        feed.add_argument("--json", action="store_true", help="print JSON")
        relay = sub.add_parser("relay", help="apply the invalidation log to the stores")
        relay.add_argument("--once", action="store_true", help="drain the log once and exit")
        log = sub.add_parser("log", help="the invalidation log's backlog")
        log.add_argument("--json", action="store_true", help="print JSON")
        for p in (feed, relay, log):
            p.add_argument("--database", default=None, help="the log database alias")
        clear = sub.add_parser("clear", help="make every cached entry miss (after a deploy)")
        clear.add_argument(
            "--store", action="append", default=None, help="a store name (default: all)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from ...conf import get_settings

        if options["command"] == "clear":
            self._clear(options["store"])
            return

        using = options["database"] or get_settings().log_database
        if using is None:
            raise CommandError("FRESHCACHE['LOG_DATABASE'] is None: the invalidation log is off")
        if using not in connections:
            raise CommandError(f"no database {using!r} in DATABASES")
        try:
            getattr(self, "_" + options["command"])(using, options)
        except DatabaseError as exc:
            raise CommandError(f"database {using!r}: {exc}") from exc

    def _changefeed(self, using: str, options: dict[str, Any]) -> None:
        from ...log import reset, triggers

        action = options["action"]
        if connections[using].vendor != "postgresql":
            raise CommandError(
                f"database {using!r} is {connections[using].vendor}: triggers need PostgreSQL; "
                "freshcache logs the writes made through Django there (see docs/outside-writes.md)"
            )
        if action == "uninstall":
            n = triggers.uninstall(using)
            reset()
            self.stdout.write(f"removed the triggers of {n} table(s)")
            return
        from ...log import ready

        if not ready(using):
            raise CommandError(f"no freshcache_log table on {using!r}: run `manage.py migrate`")
        states = triggers.install(using) if action == "install" else triggers.status(using)
        reset()
        if options["json"]:
            self.stdout.write(
                json.dumps([{"table": s.table, "state": s.state, "columns": s.columns}
                            for s in states], indent=2)
            )
            return
        width = max((len(s.table) for s in states), default=5)
        for s in states:
            style = self.style.SUCCESS if s.state == "ok" else self.style.WARNING
            cols = ", ".join(s.columns)
            # Padded before colouring: the escape codes would count as width.
            self.stdout.write(f"{s.table:<{width}}  {style(f'{s.state:<11}')} {cols}")
        bad = sum(1 for s in states if s.state in ("missing", "outdated"))
        if bad:
            self.stdout.write(
                self.style.WARNING(
                    f"{bad} table(s) without current triggers: run "
                    "`manage.py freshcache changefeed install`"
                )
            )
        elif action == "install":
            self.stdout.write(self.style.SUCCESS(f"triggers installed on {len(states)} table(s)"))

    def _relay(self, using: str, options: dict[str, Any]) -> None:
        from ...log import is_active
        from ...log.relay import Relay, drain

        if not is_active(using):
            raise CommandError(
                f"the invalidation log is not active on {using!r} (run `manage.py migrate`; "
                "on SQLite a shared store must be configured)"
            )
        if options["once"]:
            from ...stores import StoreUnavailable

            try:
                rows, bumped, _ = drain(using)
            except StoreUnavailable as exc:
                raise CommandError(
                    f"a store is unreachable, nothing was applied (the rows wait): {exc}"
                ) from exc
            self.stdout.write(f"{rows} log row(s) read, {bumped} applied")
            return
        relay = Relay()
        signal.signal(signal.SIGTERM, lambda *a: relay._stop.set())
        self.stdout.write(f"relaying the invalidation log of {using!r}; Ctrl-C to stop")
        with contextlib.suppress(KeyboardInterrupt):
            relay.run(using)
        self.stdout.write(f"stopped after {relay.drains} drain(s), {relay.rows_applied} applied")

    def _log(self, using: str, options: dict[str, Any]) -> None:
        from ...log import ready, triggers

        if not ready(using):
            raise CommandError(f"no freshcache_log table on {using!r}: run `manage.py migrate`")
        with connections[using].cursor() as cursor:
            cursor.execute("SELECT count(*), min(created) FROM freshcache_log")
            count, oldest = cursor.fetchone()
        age = None
        if oldest is not None and hasattr(oldest, "timestamp"):
            age = round(max(0.0, time.time() - oldest.timestamp()), 3)
        states = triggers.status(using)
        missing = [s.table for s in states if s.state in ("missing", "outdated")]
        report = {
            "database": using,
            "waiting": int(count),
            "oldest_seconds": age,
            "triggers": "n/a" if connections[using].vendor != "postgresql" else (
                "ok" if not missing else f"missing on {', '.join(missing)}"
            ),
        }
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2))
            return
        for key, value in report.items():
            self.stdout.write(f"{key:<15} {value}")

    def _clear(self, names: list[str] | None) -> None:
        from ...conf import get_settings
        from ...stores import StoreUnavailable, get_store

        known = get_settings().stores
        unknown = [n for n in names or () if n not in known]
        if unknown:
            raise CommandError(
                f"no store named {', '.join(map(repr, unknown))}; FRESHCACHE['STORES'] has: "
                f"{', '.join(sorted(known))}"
            )
        failed = []
        for name in names or sorted(known):
            store = get_store(name)
            if not store.shared:
                self.stdout.write(
                    self.style.WARNING(
                        f"{name}: {known[name]} lives in each process; restart them to clear it"
                    )
                )
                continue
            try:
                store.clear()
            except StoreUnavailable as exc:
                failed.append(name)
                self.stderr.write(f"{name}: not cleared: {exc}")
                continue
            self.stdout.write(self.style.SUCCESS(f"{name}: cleared"))
        if failed:
            raise CommandError(f"{len(failed)} store(s) could not be cleared")
