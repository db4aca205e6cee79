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
from urllib.parse import urlsplit

from django.conf import settings as django_settings
from django.core.checks import CheckMessage, Error, Info, Warning

from .conf import DEFAULTS, did_you_mean

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

    from .conf import KINDS, get_settings, problems

    settings = get_settings()
    found = problems()
    messages: list[CheckMessage] = [
        Error(p.message, hint=_HINTS[p.kind], id=KINDS[p.kind]) for p in found
    ]
    messages.extend(_check_labels(settings, apps))
    for name, url in sorted(settings.stores.items()):
        messages.extend(_check_store(name, url, warn=not found))
    if not found:
        messages.extend(_check_log(settings, kwargs.get("databases")))
        messages.extend(_check_django_caches(settings))
    return messages


def _check_django_caches(settings: Any) -> list[CheckMessage]:
    """freshcache.W005: a process-local ``CACHES`` backend while a freshcache store is shared."""
    from django.core.cache.backends.dummy import DummyCache
    from django.core.cache.backends.filebased import FileBasedCache
    from django.core.cache.backends.locmem import LocMemCache
    from django.utils.module_loading import import_string

    shared = sorted(n for n, url in settings.stores.items() if urlsplit(url).scheme != "memory")
    if not shared:
        return []
    found: list[CheckMessage] = []
    for alias, params in sorted(getattr(django_settings, "CACHES", {}).items()):
        declared = settings.django_caches.get(alias)
        try:
            backend = import_string(params["BACKEND"])
        except Exception:
            continue  # Django reports a backend that cannot be imported
        if not isinstance(backend, type) or issubclass(backend, DummyCache):
            continue  # DummyCache never returns a value: nothing read from it goes stale
        local = issubclass(backend, LocMemCache | FileBasedCache)
        if declared == "shared" or not (local or declared == "local"):
            continue
        found.append(
            Warning(
                f"CACHES[{alias!r}] uses {backend.__name__}, which each process keeps for "
                f"itself, while the freshcache store {shared[0]!r} is shared.",
                hint="Cached pages and functions that read this cache (cache.get(), e.g. in a "
                "template tag) are served but never stored: a write in another process cannot "
                "reach this process's copy. Use a shared backend in CACHES (Redis, Memcached, "
                "database), or, if its values are the same in every process, declare it: "
                f"FRESHCACHE['DJANGO_CACHES'] = {{{alias!r}: 'shared'}}.",
                id="freshcache.W005",
            )
        )
    return found


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
}


def _check_store(name: str, url: str, *, warn: bool) -> list[CheckMessage]:
    """Errors in a store's URL (the first one found); then, with ``warn``, its warnings."""
    from .stores import SCHEMES, database_alias, known_options, redacted, unknown_options

    scheme = urlsplit(url).scheme
    shown = redacted(url)
    if scheme not in SCHEMES:
        return [
            Error(
                f"Store {name!r} has URL {shown!r} with unknown scheme {scheme!r}.",
                hint="Use memory://, database://, redis:// or rediss://.",
                id="freshcache.E002",
            )
        ]
    known = known_options(scheme)
    unknown = unknown_options(url)
    if unknown:
        return [
            Error(
                f"Store {name!r} has URL {shown!r} with unknown option {option!r}"
                f"{did_you_mean(option, known)}.",
                hint=f"{scheme}:// understands: {', '.join(known)}. See docs/settings.md for "
                "store URLs.",
                id="freshcache.E014",
            )
            for option in unknown
        ]
    if scheme == "database" and (alias := database_alias(url)) not in django_settings.DATABASES:
        return [
            Error(
                f"Store {name!r} uses database alias {alias!r}, which is not in DATABASES"
                f"{did_you_mean(alias, django_settings.DATABASES)}.",
                hint="Name an alias from DATABASES: database://?alias=NAME.",
                id="freshcache.E004",
            )
        ]
    if (invalid := _construct(name, url)) is not None:
        return [invalid]
    if scheme in ("redis", "rediss"):
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
    if not warn:
        return []
    if scheme == "memory" and not django_settings.DEBUG:
        return [
            Warning(
                f"Store {name!r} is memory:// with DEBUG = False.",
                hint="The memory store lives in one process: writes made by other processes "
                "(other workers, manage.py shell) do not invalidate it. Use database:// or "
                "redis:// in production.",
                id="freshcache.W001",
            )
        ]
    if scheme in ("redis", "rediss"):
        return _check_redis(name, shown)
    return []


def _construct(name: str, url: str) -> CheckMessage | None:
    """Build the store from its URL (no connection is made) to catch a malformed URL now.

    Without this, a bad port or option (``redis://host:port6379``, ``?socket_timeout=fast``)
    raised out of the check run, or only at the first cached call.
    """
    from .stores import from_url, redacted

    try:
        store = from_url(name, url)
    except ImportError:
        return None  # reported as freshcache.E003
    except Exception as exc:
        return Error(
            f"Store {name!r} has URL {redacted(url)!r}, which cannot be used: {exc}.",
            hint="Check the host, port and options; see docs/settings.md for store URLs.",
            id="freshcache.E005",
        )
    store.close()
    return None


def _check_redis(name: str, shown: str) -> list[CheckMessage]:
    from .stores import get_store
    from .stores.redis import RedisStore

    store = get_store(name)
    if not isinstance(store, RedisStore):
        return []
    if not store.ping():
        return [
            Warning(
                f"Store {name!r} ({shown}) cannot be reached now.",
                hint="freshcache computes uncached while Redis is down; check the URL and that "
                "the server is running.",
                id="freshcache.W002",
            )
        ]
    return _check_eviction(name, shown, store)


#: Why an eviction policy cannot bound what freshcache writes (freshcache.W006).
_EVICTION_HINTS = {
    "noeviction": "Once full, Redis answers writes with OOM errors: freshcache then stores "
    "nothing (pages are served uncached, reason 'store full') and invalidations fail, so "
    "processes read nothing from the store until memory is freed. Set maxmemory-policy "
    "volatile-lru (freshcache gives entries and tag versions a TTL) or allkeys-lru.",
    "volatile": "volatile-* policies evict only keys with a TTL, and with TIMEOUT = None "
    "freshcache's entries and tag versions have none: once full, Redis refuses writes. Set "
    "TIMEOUT (the default is 86400 seconds) or use maxmemory-policy allkeys-lru.",
}


def _check_eviction(name: str, shown: str, store: Any) -> list[CheckMessage]:
    """freshcache.W006: Redis has a memory limit its eviction policy cannot keep with what
    freshcache writes. Nothing when CONFIG cannot be read (managed services disable it)."""
    from .conf import get_settings

    config = store.memory_config()
    if config is None or config.maxmemory == 0:
        return []  # no limit: entries still expire after TIMEOUT
    where = f"Store {name!r} ({shown}): Redis has maxmemory {config.maxmemory}"
    if config.policy == "noeviction":
        why = f"{where} and maxmemory-policy 'noeviction': it refuses writes once full."
        return [Warning(why, hint=_EVICTION_HINTS["noeviction"], id="freshcache.W006")]
    if config.policy.startswith("volatile-") and get_settings().timeout is None:
        why = (
            f"{where} and maxmemory-policy {config.policy!r}, which cannot evict freshcache's "
            "keys: TIMEOUT is None, so they have no TTL."
        )
        return [Warning(why, hint=_EVICTION_HINTS["volatile"], id="freshcache.W006")]
    return []


# -- model and field labels: EXCLUDE, VOLATILE_FIELDS, PREDICATE_FIELDS ------------------------


def _check_labels(settings: Any, registry: Any) -> list[CheckMessage]:
    """freshcache.E015 to E018: labels that name no model or column the capture would match
    (the capture ignores such an entry: capture/tables.py), and predicate columns that cannot
    be keyed. ``registry``: the app registry (``django.apps.apps``)."""
    messages: list[CheckMessage] = []
    for setting, labels in (
        ("EXCLUDE", settings.exclude),
        ("VOLATILE_FIELDS", settings.volatile_fields),
        ("PREDICATE_FIELDS", settings.predicate_fields),
    ):
        for label in labels:
            if setting == "EXCLUDE" and label in DEFAULTS["EXCLUDE"]:
                continue  # the defaults name apps a project may not install
            message = _check_label(setting, label, registry)
            if message is not None:
                messages.append(message)
    return messages


def _check_label(setting: str, label: str, registry: Any) -> CheckMessage | None:
    parts = label.split(".")
    fields = setting != "EXCLUDE"
    if not all(parts) or len(parts) not in ((3,) if fields else (1, 2)):
        example = "'blog.Post.view_count'" if fields else "'sessions' or 'admin.LogEntry'"
        shape = "app_label.ModelName.field_name" if fields else "app_label or app_label.ModelName"
        return Error(
            f"FRESHCACHE[{setting!r}] has {label!r}, which is not an {shape} label.",
            hint=f"Write each entry as {shape}, e.g. {example}.",
            id="freshcache.E015",
        )
    where = f"FRESHCACHE[{setting!r}] has {label!r}, but"
    unknown_hint = (
        "Name an installed app and one of its models as Model._meta.label spells them (e.g. "
        "'blog.Post'). Until then the entry is ignored."
    )
    configs = {c.label.lower(): c for c in registry.get_app_configs()}
    config = configs.get(parts[0].lower())
    if config is None:
        return Error(
            f"{where} no installed app is labelled {parts[0]!r}"
            f"{did_you_mean(parts[0], [c.label for c in configs.values()])}.",
            hint=unknown_hint,
            id="freshcache.E016",
        )
    if len(parts) == 1:
        return None
    models = {m._meta.model_name: m for m in config.get_models(include_auto_created=True)}
    model = models.get(parts[1].lower())
    if model is None or model._meta.proxy or model._meta.swapped:
        if model is None:
            names = [m._meta.object_name for m in models.values()]
            why = f"app {config.label!r} has no model {parts[1]!r}{did_you_mean(parts[1], names)}"
        elif model._meta.swapped:
            why = f"{model._meta.label} is swapped for {model._meta.swapped}"
        else:  # the capture tracks tables, and a proxy has its concrete model's
            concrete = model._meta.concrete_model._meta.label
            fix = ".".join([concrete, *parts[2:]])
            why = f"{model._meta.label} is a proxy model: its rows are {concrete}'s (write {fix!r})"
        return Error(f"{where} {why}.", hint=unknown_hint, id="freshcache.E016")
    return _check_field(setting, label, model, parts[2]) if fields else None


def _check_field(setting: str, label: str, model: Any, name: str) -> CheckMessage | None:
    from django.core.exceptions import FieldDoesNotExist

    from .capture.tables import _keyable

    meta = model._meta
    own = [f for f in meta.local_concrete_fields if f.column is not None]
    field = next((f for f in own if f.name.lower() == name.lower()), None)
    if field is not None:
        if setting == "PREDICATE_FIELDS" and not _keyable(field):
            return Error(
                f"FRESHCACHE['PREDICATE_FIELDS'] has {label!r}, which cannot be keyed: "
                f"{_unkeyable(field)}.",
                hint="Remove it: reads that filter on it then depend on the whole table (still "
                "fresh, invalidated more often). freshcache keys integers, strings without "
                "db_collation, UUIDs and booleans; to key this value, keep it in such a column "
                "too (a price as a whole number of cents, a date as its ISO text).",
                id="freshcache.E018",
            )
        return None
    try:
        other = meta.get_field(name)
    except FieldDoesNotExist:
        other = None
    column = next((f for f in own if name.lower() in (f.attname.lower(), f.column.lower())), None)
    if column is not None:
        why = f"labels name fields, not columns (write '{meta.label}.{column.name}')"
    elif other is not None and other in meta.concrete_fields:  # multi-table inheritance
        origin = other.model._meta.label
        why = f"{other.name!r} is inherited from {origin}, whose table holds it (write "
        why += f"'{origin}.{other.name}')"
    elif other is not None:
        why = f"{other.name!r} is a relation without a column in {meta.db_table}"
    else:
        names = [f.name for f in own]
        why = f"{meta.label} has no field {name!r}{did_you_mean(name, names)}"
    return Error(
        f"FRESHCACHE[{setting!r}] has {label!r}, but {why}.",
        hint="Name a field stored in the model's own table, by its name: "
        "app_label.ModelName.field_name. Until then the entry is ignored.",
        id="freshcache.E017",
    )


#: Why a column of this type cannot be keyed (capture/tables.py keys only values with one
#: canonical text form).
_UNKEYABLE = {
    "DecimalField": "one decimal number has several spellings (1.5, 1.50)",
    "DateTimeField": "one instant has a spelling per time zone and precision",
    "FloatField": "a float has several spellings and rounds (0.1 + 0.2 != 0.3)",
    "JSONField": "one JSON value has many spellings (key order, spacing)",
}


def _unkeyable(field: Any) -> str:
    """Why ``field`` cannot be keyed, for freshcache.E018."""
    kind = type(field).__name__
    if not type(field).__module__.startswith("django.db.models"):
        return (
            f"{kind} is a custom field ({type(field).__module__}), and freshcache cannot know "
            "that reads and writes turn its values into the same text"
        )
    if getattr(field, "db_collation", None):
        return (
            f"it has db_collation={field.db_collation!r}, so values the database finds equal "
            "may differ in text"
        )
    target = getattr(field, "target_field", None)
    if field.is_relation and target is not None:
        return f"it refers to {target.model._meta.label}.{target.name}: {_unkeyable(target)}"
    reason = _UNKEYABLE.get(field.get_internal_type(), "its values have no one text form")
    return f"a {kind}, and {reason}, so a read and a write could name different tags"


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
                f"The invalidation log table freshcache_log does not exist in database {alias!r}.",
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
