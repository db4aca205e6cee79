"""System checks for ``FRESHCACHE`` (listed with their hints in docs/checks.md).

Checks never raise. Those that ask a server something are bounded in time: Redis by the store's
timeouts, the database by :data:`DATABASE_CHECK_SECONDS` (the question runs in a thread of its
own, on a connection of its own, because a database connection has no timeout unless its
``OPTIONS`` set one). A server that cannot answer in time is skipped, not reported: Django and the
first request report an unreachable database better than a cache check can.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.conf import settings as django_settings
from django.core.checks import CheckMessage, Error, Info, Warning
from django.core.exceptions import ImproperlyConfigured

__all__ = ["DATABASE_CHECK_SECONDS", "check_settings"]

#: How long the checks of the invalidation log wait for the database (seconds).
DATABASE_CHECK_SECONDS = 2.0


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Validate ``FRESHCACHE`` and the invalidation log; never raise, never block on a slow
    server for long.

    ``databases`` (Django passes it): the log database is asked only when it is listed, or when
    no list is given (``manage.py check`` and ``runserver`` give none; the warnings about the
    log's triggers are meant for them).
    """
    from .conf import get_settings
    from .stores import SCHEMES

    try:
        settings = get_settings()
    except ImproperlyConfigured as exc:
        return [
            Error(str(exc), hint="See docs/settings.md for every setting.", id="freshcache.E001")
        ]
    messages: list[CheckMessage] = []
    for name, url in sorted(settings.stores.items()):
        scheme = urlsplit(url).scheme
        if scheme not in SCHEMES:
            messages.append(
                Error(
                    f"Store {name!r} has URL {url!r} with unknown scheme {scheme!r}.",
                    hint="Use memory://, database://, redis:// or rediss://.",
                    id="freshcache.E002",
                )
            )
        elif (invalid := _construct(name, url)) is not None:
            messages.append(invalid)
        elif scheme == "memory" and not django_settings.DEBUG:
            messages.append(
                Warning(
                    f"Store {name!r} is memory:// with DEBUG = False.",
                    hint="The memory store lives in one process: writes made by other processes "
                    "(other workers, manage.py shell) do not invalidate it. Use database:// or "
                    "redis:// in production.",
                    id="freshcache.W001",
                )
            )
        elif scheme in ("redis", "rediss"):
            messages.extend(_check_redis(name, url))
        elif scheme == "database":
            alias = parse_qs(urlsplit(url).query).get("alias", ["default"])[0]
            if alias not in django_settings.DATABASES:
                messages.append(
                    Error(
                        f"Store {name!r} uses database alias {alias!r}, which is not in DATABASES.",
                        hint="Name an alias from DATABASES: database://?alias=NAME.",
                        id="freshcache.E004",
                    )
                )
    messages.extend(_check_log(settings, kwargs.get("databases")))
    return messages


def _construct(name: str, url: str) -> CheckMessage | None:
    """Build the store from its URL (no connection is made) to catch a malformed URL now.

    Without this, a bad port or option (``redis://host:port6379``, ``?socket_timeout=fast``)
    raised out of the check run, or only at the first cached call.
    """
    from .stores import from_url

    try:
        store = from_url(name, url)
    except ImportError:
        return None  # reported by _check_redis as freshcache.E003
    except (ValueError, TypeError, ImproperlyConfigured) as exc:
        return Error(
            f"Store {name!r} has URL {url!r}, which cannot be used: {exc}.",
            hint="Check the host, port and options; see docs/settings.md for store URLs.",
            id="freshcache.E005",
        )
    store.close()
    return None


def _check_redis(name: str, url: str) -> list[CheckMessage]:
    try:
        import redis  # noqa: F401
    except ImportError:
        return [
            Error(
                f"Store {name!r} is a Redis URL but the redis package is not installed.",
                hint="pip install 'django-freshcache[redis]'",
                id="freshcache.E003",
            )
        ]
    from .stores import get_store
    from .stores.redis import RedisStore

    store = get_store(name)
    if isinstance(store, RedisStore) and not store.ping():
        return [
            Warning(
                f"Store {name!r} ({url}) cannot be reached now.",
                hint="freshcache computes uncached while Redis is down; check the URL and that "
                "the server is running.",
                id="freshcache.W002",
            )
        ]
    return []


def _check_log(settings: Any, databases: Any) -> list[CheckMessage]:
    """freshcache.W003, W004 (PostgreSQL: asks the database) and I001 (other databases)."""
    alias = settings.log_database
    if alias is None or (databases is not None and alias not in databases):
        return []
    try:
        from django.db import connections

        vendor = connections[alias].vendor
    except Exception:
        return []
    if vendor != "postgresql":
        if all(urlsplit(url).scheme == "memory" for url in settings.stores.values()):
            return []  # one process sees its own writes only (W001 says so when it matters)
        return [
            Info(
                f"The invalidation log is in database {alias!r} ({vendor}), which has no log "
                "triggers: writes made outside Django are not seen.",
                hint="freshcache logs the writes made through Django only. After another "
                "program writes (a database shell, a script, another service), invalidate what "
                "it changed with freshcache.invalidate() from Django. Log triggers need "
                "PostgreSQL: see docs/outside-writes.md.",
                id="freshcache.I001",
            )
        ]
    found = _ask_database(alias)
    if found is None:
        return []  # not migrated yet (``migrate`` runs the checks first), or no answer in time
    has_log, states = found
    if not has_log:
        return [
            Warning(
                f"The invalidation log table freshcache_log does not exist in database "
                f"{alias!r}.",
                hint="Its migration is recorded as applied: the table was dropped, the "
                "migration faked, or freshcache's models are routed away from LOG_DATABASE. "
                "Until it exists, an invalidation that cannot reach a store may be lost, and "
                "writes made outside Django are not seen. To create it: `manage.py migrate "
                "freshcache 0001 --fake`, then `manage.py migrate freshcache`.",
                id="freshcache.W004",
            )
        ]
    bad = [s for s in states if s.state in ("missing", "outdated")]
    if not bad:
        return []
    names = ", ".join(f"{s.table} ({s.state})" for s in bad)
    return [
        Warning(
            f"Log triggers are missing or outdated on {len(bad)} tracked table(s) of database "
            f"{alias!r}: {names}.",
            hint="Writes made outside Django to these tables (psql, other services, cascades "
            "and triggers in SQL) may not be invalidated. Run `manage.py freshcache changefeed "
            "install`.",
            id="freshcache.W003",
        )
    ]


#: The migration that creates the log table: before it is applied, there is nothing to check
#: (and ``migrate``, which runs the checks before migrating, would warn about what it is about
#: to create).
LOG_MIGRATION = ("freshcache", "0002_log")


def _ask_database(alias: str) -> tuple[bool, list[Any]] | None:
    """(does the log table exist, the trigger state of every tracked table) on ``alias``;
    ``None`` when the log's migration is not applied there, or the database cannot tell within
    :data:`DATABASE_CHECK_SECONDS`."""
    answer: list[tuple[bool, list[Any]] | None] = []

    def ask() -> None:
        conn: Any = None
        try:
            from django.db import connections
            from django.db.migrations.recorder import MigrationRecorder

            from .log import triggers

            conn = connections[alias]  # this thread's own connection
            if LOG_MIGRATION not in MigrationRecorder(conn).applied_migrations():
                answer.append(None)
                return
            has_log = "freshcache_log" in conn.introspection.table_names()
            answer.append((has_log, triggers.status(alias) if has_log else []))
        except Exception:
            pass  # unreachable, no rights, blocked by a test runner: nothing to report
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()

    thread = threading.Thread(target=ask, name="freshcache-check", daemon=True)
    thread.start()
    thread.join(DATABASE_CHECK_SECONDS)
    return answer[0] if answer else None
