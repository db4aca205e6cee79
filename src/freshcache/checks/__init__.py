"""System checks for ``FRESHCACHE`` (listed with their hints in docs/checks.md).

Checks never raise. Those that ask a server something are bounded in time: Redis by the store's
timeouts, the database by :data:`DATABASE_CHECK_SECONDS` (the question runs in a thread of its
own, on a connection of its own, because a database connection has no timeout unless its
``OPTIONS`` set one). A server that cannot answer in time is skipped, not reported: Django and the
first request report an unreachable database better than a cache check can.

This module runs them all (:func:`check_settings`) and holds the checks of the settings' values
and of the invalidation log; ``stores.py`` checks the stores' URLs and servers, and Django's
``CACHES`` beside them; ``labels.py`` checks the model and field labels of ``EXCLUDE``,
``VOLATILE_FIELDS`` and ``PREDICATE_FIELDS``.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from django.core.checks import CheckMessage, Error, Info, Warning

from ..conf import DEFAULTS
from .labels import check_labels as _check_labels  # tests/test_checks.py imports it from here
from .stores import check_django_caches, check_store

__all__ = ["DATABASE_CHECK_SECONDS", "check_settings"]

#: How long the checks of the invalidation log wait for the database (seconds).
DATABASE_CHECK_SECONDS = 2.0


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Validate ``FRESHCACHE`` and the invalidation log; never raise, never block on a slow
    server for long.

    ``databases`` (Django passes it): the log database is asked only when it is listed, or when
    no list is given (``manage.py check`` and ``runserver`` give none; the warnings about the
    log's triggers are meant for them). While ``FRESHCACHE`` has errors (caching is then off),
    only errors are reported: the warnings describe a configuration that is not running.
    """
    from django.apps import apps

    from ..conf import KINDS, get_settings, problems

    settings = get_settings()
    found = problems()
    messages: list[CheckMessage] = [
        Error(p.message, hint=_HINTS[p.kind], id=KINDS[p.kind]) for p in found
    ]
    messages.extend(_check_labels(settings, apps))
    for name, url in sorted(settings.stores.items()):
        messages.extend(check_store(name, url, warn=not found))
    if not found:
        messages.extend(_check_log(settings, kwargs.get("databases")))
        messages.extend(check_django_caches(settings))
        messages.extend(_check_publish_root(settings))
        messages.extend(_check_mirrors(settings))
    messages.extend(_check_metrics(settings))
    return messages


def _check_mirrors(settings: Any) -> list[CheckMessage]:
    """freshcache.W008: an alias whose ``TEST["MIRROR"]`` names another alias (Django's sign of
    a replica) is not in ``READ_REPLICAS``: its reads would be tagged as another database's, and
    a write on the primary would never invalidate what was built from them."""
    from django.conf import settings as django_settings

    found: list[CheckMessage] = []
    for alias, config in sorted(django_settings.DATABASES.items()):
        mirror = (config.get("TEST") or {}).get("MIRROR")
        if mirror and alias not in settings.read_replicas:
            found.append(
                Warning(
                    f"DATABASES[{alias!r}] mirrors {mirror!r} in tests (a read replica?), but "
                    f"FRESHCACHE['READ_REPLICAS'] does not name it: what is built from reads "
                    f"of {alias!r} is never invalidated by writes on {mirror!r}.",
                    hint=f"Add FRESHCACHE['READ_REPLICAS'] = {{{alias!r}: {mirror!r}}}. "
                    "See docs/scaling.md.",
                    id="freshcache.W008",
                )
            )
    return found


def _check_metrics(settings: Any) -> list[CheckMessage]:
    """freshcache.E023: ``METRICS`` is on without ``prometheus_client``."""
    from .. import metrics

    if not settings.metrics or metrics.available():
        return []
    return [
        Error(
            "FRESHCACHE['METRICS'] is True but prometheus_client is not installed, so no "
            "metrics are collected and the metrics view raises ImproperlyConfigured.",
            hint="pip install 'django-freshcache[prometheus]', or set FRESHCACHE['METRICS'] "
            "to False. See docs/observability.md.",
            id="freshcache.E023",
        )
    ]


def _check_publish_root(settings: Any) -> list[CheckMessage]:
    """freshcache.W009: ``EDGE["PUBLISH"]["ROOT"]`` cannot be created or written (it shared
    W008 with the read-replica warning until 0.2)."""
    import os

    publishing = settings.edge.publish
    if publishing is None:
        return []
    existing = publishing.root
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if os.path.isdir(existing) and os.access(existing, os.W_OK | os.X_OK):
        return []
    return [
        Warning(
            f"FRESHCACHE['EDGE']['PUBLISH']['ROOT'] {publishing.root!r} cannot be written "
            f"({existing!r} is not a writable directory): no page is published.",
            hint="Create the directory and let the user the web processes run as write to it "
            "(nginx only reads it). See docs/edge.md.",
            id="freshcache.W009",
        )
    ]


#: The hint of each kind of mistake that ``conf.read`` finds (``conf.KINDS`` has their ids).
_HINTS = {
    "settings": "See docs/settings.md for every setting.",
    "unknown": f"Known settings: {', '.join(sorted(DEFAULTS))}. See docs/settings.md.",
    "type": "See docs/settings.md for the type of every setting.",
    "switch": "Write True or False, without quotes: a non-empty string, 'False' too, is true "
    "in Python, so the setting would stay on.",
    "seconds": "Write a number of seconds (an int or a float), without quotes.",
    "count": "Write a whole number greater than 0, without quotes.",
    "status": "Write status codes as integers, e.g. [200, 301, 404].",
    "error_status": "Remove it: a stored error would be served after its cause is gone. 5xx "
    "responses are never stored, whatever this setting says.",
    "path": "Write each path prefix as request.path spells it, starting with '/' (e.g. '/admin/').",
    "alias": "Name an alias from DATABASES, or None to turn the invalidation log off.",
    "size": "Write a whole number of bytes greater than 0, without quotes (1048576 is 1 MiB), "
    "or None for no limit.",
    "lease": "Write a number of seconds without quotes, from 0 to 3600: LEASE_SECONDS longer "
    "than a slow render, LEASE_WAIT_SECONDS as long as a request may wait for another's render "
    "(0 in either turns single flight off). See docs/settings.md.",
    "cache": "Map aliases of CACHES to 'shared' (the same values in every process) or 'local'. "
    "See docs/settings.md.",
    "edge": "Write EDGE as a dict: 'KEYS' lists the edges in front of the site (akamai, "
    "cloudflare, fastly, varnish), 'SEND_KEYS' is True or False, 'MAX_HEADER_BYTES' a whole "
    "number of bytes or None, 'PURGERS' a list of dicts with a 'BACKEND' and its options, "
    "'PUBLISH' a dict with an absolute 'ROOT' and a list of 'URLS' patterns. See docs/edge.md.",
    "replicas": "Map the alias of each read replica to the alias of the database it replicates, "
    "both from DATABASES, such as {'replica': 'default'}. See docs/scaling.md.",
    "shadow": "Write SHADOW as a dict: 'RATE' the share of page hits to re-render, a number from "
    "0 to 1 (0.01 is 1%), 'EXCLUDE' a list of path patterns never re-rendered, 'QUEUE_SIZE' a "
    "whole number greater than 0. See docs/observability.md.",
}


def _check_log(settings: Any, databases: Any) -> list[CheckMessage]:
    """freshcache.W003, W004, W007 (PostgreSQL: asks the database) and I001 (other
    databases)."""
    alias = settings.log_database
    if alias is None or (databases is not None and alias not in databases):
        return []
    try:
        from django.db import connections

        vendor = connections[alias].vendor
    except Exception:
        return []
    if vendor != "postgresql":
        if all(url.startswith("memory:") for url in settings.stores.values()):
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
    has_log, states, has_queue = found
    queue: list[CheckMessage] = []
    if settings.edge.purgers and not has_queue:
        queue.append(
            Warning(
                "FRESHCACHE['EDGE']['PURGERS'] is set, but the purge queue table freshcache_purge "
                f"does not exist in database {alias!r}.",
                hint="Run `manage.py migrate freshcache`. Until the table exists, relays cannot "
                "delete applied log rows (their purges would be lost), so every process computes "
                "pages uncached.",
                id="freshcache.W007",
            )
        )
    if not has_log:
        return [
            Warning(
                f"The invalidation log table freshcache_log does not exist in database {alias!r}.",
                hint="Its migration is recorded as applied: the table was dropped, the "
                "migration faked, or freshcache's models are routed away from LOG_DATABASE. "
                "Until it exists, an invalidation that cannot reach a store may be lost, and "
                "writes made outside Django are not seen. To create it: `manage.py migrate "
                "freshcache 0001 --fake`, then `manage.py migrate freshcache`.",
                id="freshcache.W004",
            ),
            *queue,
        ]
    bad = [s for s in states if s.state in ("missing", "outdated")]
    if not bad:
        return queue
    names = ", ".join(f"{s.table} ({s.state})" for s in bad)
    return [
        Warning(
            f"Log triggers are missing or outdated on {len(bad)} tracked table(s) of database "
            f"{alias!r}: {names}.",
            hint="Writes made outside Django to these tables (psql, other services, cascades "
            "and triggers in SQL) may not be invalidated. Run `manage.py freshcache changefeed "
            "install`.",
            id="freshcache.W003",
        ),
        *queue,
    ]


#: The migration that creates the log table: before it is applied, there is nothing to check
#: (and ``migrate``, which runs the checks before migrating, would warn about what it is about
#: to create).
LOG_MIGRATION = ("freshcache", "0002_log")


def _ask_database(alias: str) -> tuple[bool, list[Any], bool] | None:
    """(does the log table exist, the trigger state of every tracked table, does the purge
    queue table exist) on ``alias``;
    ``None`` when the log's migration is not applied there, or the database cannot tell within
    :data:`DATABASE_CHECK_SECONDS`."""
    answer: list[tuple[bool, list[Any], bool] | None] = []

    def ask() -> None:
        conn: Any = None
        try:
            from django.db import connections
            from django.db.migrations.recorder import MigrationRecorder

            from ..log import triggers

            conn = connections[alias]  # this thread's own connection
            if LOG_MIGRATION not in MigrationRecorder(conn).applied_migrations():
                answer.append(None)
                return
            tables = conn.introspection.table_names()
            has_log = "freshcache_log" in tables
            states = triggers.status(alias) if has_log else []
            answer.append((has_log, states, "freshcache_purge" in tables))
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
