"""The ``FRESHCACHE`` settings dict, read into a frozen dataclass.

Settings are read lazily through :func:`get_settings`, cached, and re-read whenever Django's
``setting_changed`` signal fires for ``FRESHCACHE`` (so ``override_settings`` works in tests).
Nothing is decided at import time.

A wrong value never raises where the settings are used (a request, a write, the relay): that
would turn every cached page into a 500. :func:`read` records each mistake as a
:class:`Problem` (the system checks report each under its id, with a hint: docs/checks.md),
puts the default in its place (in a list, leaves the bad entry out), and turns caching off.
:func:`get_settings` then logs one WARNING per configuration. Every valid setting still applies,
so writes keep invalidating the stores and the processes that read them stay fresh.
"""

from __future__ import annotations

import difflib
import logging
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Any, NamedTuple

from django.conf import settings as django_settings

__all__ = ["DEFAULTS", "FreshcacheSettings", "Problem", "get_settings", "problems", "read"]

logger = logging.getLogger("freshcache")

#: Every setting with its default, in one literal (documented in docs/settings.md).
DEFAULTS: dict[str, Any] = {
    "ENABLED": True,
    "STORE": "memory://",
    "STORES": {},
    "KEY_PREFIX": "fc",
    "TIMEOUT": 86400,
    "MAX_ENTRY_SIZE": 1048576,
    "SOCKET_TIMEOUT": 0.25,
    "CONNECT_TIMEOUT": 0.25,
    "BREAKER_SECONDS": 2.0,
    "EXCLUDE": ("sessions", "migrations", "admin.LogEntry", "contenttypes", "freshcache"),
    "VOLATILE_FIELDS": (),
    "PREDICATE_FIELDS": (),
    "HEADER": None,
    "BROWSER_CACHE_CONTROL": "no-cache",
    "MAX_QUERY_PARAMS": 50,
    "MAX_QUERY_LENGTH": 2048,
    "NEVER_CACHE_PATHS": (),
    "CACHE_STATUSES": (200,),
    "LOG_DATABASE": "default",
    "RELAY": True,
    "RELAY_POLL_SECONDS": 1.0,
    "INSTALL_TRIGGERS": True,
    "LEASE_SECONDS": 10.0,
    "LEASE_WAIT_SECONDS": 5.0,
    "DJANGO_CACHES": {},
}

#: The longest lease (seconds): a render that takes longer is not worth making others wait for.
MAX_LEASE_SECONDS = 3600


@dataclass(frozen=True)
class FreshcacheSettings:
    """The validated ``FRESHCACHE`` settings. Read them with :func:`get_settings`."""

    enabled: bool = True
    #: Store URLs by name; ``"default"`` always exists.
    stores: dict[str, str] = field(default_factory=lambda: {"default": "memory://"})
    key_prefix: str = "fc"
    #: Seconds an entry (and the tag versions it records) is kept at most; ``None``: forever.
    timeout: float | None = 86400
    #: Bytes: an encoded value larger than this is served but not stored; ``None``: no limit.
    max_entry_size: int | None = 1048576
    socket_timeout: float = 0.25
    connect_timeout: float = 0.25
    breaker_seconds: float = 2.0
    exclude: tuple[str, ...] = ()
    volatile_fields: tuple[str, ...] = ()
    predicate_fields: tuple[str, ...] = ()
    header: bool | None = None
    #: ``""``: no ``Cache-Control`` is added.
    browser_cache_control: str = "no-cache"
    max_query_params: int = 50
    max_query_length: int = 2048
    never_cache_paths: tuple[str, ...] = ()
    cache_statuses: tuple[int, ...] = (200,)
    #: The database holding the invalidation log (``None``: no log).
    log_database: str | None = "default"
    relay: bool = True
    relay_poll_seconds: float = 1.0
    install_triggers: bool = True
    #: Single flight: how long a lease lasts at most (its holder died: others go ahead after it).
    lease_seconds: float = 10.0
    #: Single flight: how long a request waits for another's computation before its own.
    lease_wait_seconds: float = 5.0
    #: ``CACHES`` aliases whose locality is declared: ``"shared"`` or ``"local"``.
    django_caches: dict[str, str] = field(default_factory=dict)


class Problem(NamedTuple):
    """One mistake in ``FRESHCACHE``: the setting, the kind of mistake (the system checks give
    each kind its id and hint), and a message naming the value and, where it is known, the fix."""

    setting: str
    kind: str
    message: str


#: The kinds of :class:`Problem` and the check id each is reported under (docs/checks.md).
KINDS = {
    "settings": "freshcache.E001",  # not a dict
    "unknown": "freshcache.E001",  # an unknown key
    "type": "freshcache.E006",
    "switch": "freshcache.E007",
    "seconds": "freshcache.E008",
    "count": "freshcache.E009",
    "status": "freshcache.E010",
    "error_status": "freshcache.E011",
    "path": "freshcache.E012",
    "alias": "freshcache.E013",
    "size": "freshcache.E019",
    "lease": "freshcache.E020",
    "cache": "freshcache.E021",
}


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``word`` (ignoring case), if one is close enough."""
    by_lower = {c.lower(): c for c in candidates}
    match = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.7)
    return by_lower[match[0]] if match else None


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'X'?)`` when a candidate is close to ``word``, else ``""``."""
    match = closest(word, candidates)
    return f" (did you mean {match!r}?)" if match is not None else ""


class _Reader:
    """Reads one ``FRESHCACHE`` dict; each method returns a valid value and records mistakes."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.problems: list[Problem] = []

    def problem(self, name: str, kind: str, message: str) -> None:
        self.problems.append(Problem(name, kind, f"FRESHCACHE[{name!r}] {message}"))

    def get(self, name: str) -> Any:
        return self.raw.get(name, DEFAULTS[name])

    def switch(self, name: str, *, allow_none: bool = False) -> Any:
        value = self.get(name)
        if isinstance(value, bool) or (value is None and allow_none):
            return value
        # "False" is a non-empty string, true in Python: the very mistake worth naming.
        meant = _meant_switch(value)
        fix = f"write {meant} without quotes" if isinstance(value, str) else f"write {meant}"
        choices = "True, False or None" if allow_none else "True or False"
        self.problem(name, "switch", f"must be {choices}, not {_shown(value)} ({fix})")
        return DEFAULTS[name]

    def seconds(self, name: str, *, zero: bool = False, allow_none: bool = False) -> Any:
        value = self.get(name)
        if value is None and allow_none:
            return None
        if _is_number(value) and math.isfinite(value) and (value > 0 or (zero and value == 0)):
            return value
        wanted = "a number of seconds, 0 or more" if zero else "a positive number of seconds"
        wanted += ", or None" if allow_none else ""
        self.problem(name, "seconds", f"must be {wanted}, not {_shown(value)}{_unquote(value)}")
        return DEFAULTS[name]

    def count(self, name: str) -> int:
        value = self.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        self.problem(
            name, "count", f"must be a positive integer, not {_shown(value)}{_unquote(value)}"
        )
        return int(DEFAULTS[name])

    def size(self, name: str) -> int | None:
        """A number of bytes (a positive integer), or None for no limit."""
        value = self.get(name)
        if value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            return value
        self.problem(
            name, "size", "must be a positive whole number of bytes, or None, not "
            f"{_shown(value)}{_unquote(value)}"
        )  # fmt: skip
        return int(DEFAULTS[name])

    def text(self, name: str, what: str) -> Any:
        value = self.get(name)
        if isinstance(value, str):
            return value
        self.problem(name, "type", f"must be {what}, not {_shown(value)}")
        return DEFAULTS[name]

    def items(self, name: str, what: str) -> tuple[Any, ...]:
        value = self.get(name)
        if isinstance(value, list | tuple | set | frozenset):
            return tuple(value)
        fix = f" (write [{value!r}])" if isinstance(value, str | int) else ""
        self.problem(name, "type", f"must be a list of {what}, not {_shown(value)}{fix}")
        return tuple(DEFAULTS[name])

    def strings(self, name: str) -> tuple[str, ...]:
        """A list of strings: a bad entry is reported and left out, the others are kept."""
        kept = []
        for item in self.items(name, "strings"):
            if isinstance(item, str):
                kept.append(item)
            else:
                self.problem(name, "type", f"must be a list of strings; it has {_shown(item)}")
        return tuple(kept)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    return f"the string {value!r}" if isinstance(value, str) else repr(value)


def _unquote(value: Any) -> str:
    """`` (write 0.25 without quotes)`` for a number written as a string, else ``""``."""
    if not isinstance(value, str):
        return ""
    try:
        float(value)
    except ValueError:
        return ""
    return f" (write {value.strip()} without quotes)"


def _meant_switch(value: Any) -> str:
    text = str(value).strip().lower()
    if text in ("false", "0", "no", "off", "", "none"):
        return "False"
    if text in ("true", "1", "yes", "on"):
        return "True"
    return "True or False"


def _stores(reader: _Reader) -> dict[str, str]:
    value = reader.get("STORES")
    if not isinstance(value, dict):
        reader.problem(
            "STORES", "type", f"must map store names to URL strings, not {_shown(value)}"
        )
        value = {}
    stores: dict[str, str] = {}
    for name, url in value.items():
        if isinstance(name, str) and name and isinstance(url, str):
            stores[name] = url
        else:
            reader.problem(
                "STORES", "type", f"must map store names to URL strings, not {name!r} to "
                f"{_shown(url)}"
            )  # fmt: skip
    if "default" not in stores:  # an explicit STORES["default"] wins over STORE
        stores["default"] = reader.text("STORE", "a URL string such as 'memory://'")
    return stores


def _key_prefix(reader: _Reader) -> str:
    value = reader.get("KEY_PREFIX")
    if isinstance(value, str) and value and "{" not in value and "}" not in value:
        return value
    # Redis keys are "{PREFIX}:...": a brace in the prefix would end Redis Cluster's hash tag.
    reader.problem(
        "KEY_PREFIX", "type", f"must be a non-empty string without braces, not {_shown(value)}"
    )
    return str(DEFAULTS["KEY_PREFIX"])


def _browser_cache_control(reader: _Reader) -> str:
    if reader.get("BROWSER_CACHE_CONTROL") is None:
        return ""  # None: send no Cache-Control, like ""
    return str(reader.text("BROWSER_CACHE_CONTROL", "a Cache-Control value string, or None"))


def _statuses(reader: _Reader) -> tuple[int, ...]:
    kept: list[int] = []
    for item in reader.items("CACHE_STATUSES", "HTTP status codes"):
        if not isinstance(item, int) or isinstance(item, bool) or not 100 <= item <= 599:
            reader.problem(
                "CACHE_STATUSES", "status", "must list HTTP status codes (integers from 100 "
                f"to 599); it has {_shown(item)}{_unquote(item)}"
            )  # fmt: skip
        elif item >= 500:
            reader.problem(
                "CACHE_STATUSES", "error_status", f"has {item}, a server error: freshcache "
                "never stores a 5xx response"
            )  # fmt: skip
        else:
            kept.append(item)
    return tuple(kept) or tuple(DEFAULTS["CACHE_STATUSES"])


def _paths(reader: _Reader) -> tuple[str, ...]:
    kept = []
    for path in reader.strings("NEVER_CACHE_PATHS"):
        if path.startswith("/"):
            kept.append(path)
        else:
            reader.problem(
                "NEVER_CACHE_PATHS", "path", f"has {path!r}, which does not start with '/' and "
                f"so matches no request path (write {'/' + path!r})"
            )  # fmt: skip
    return tuple(kept)


def _lease(reader: _Reader, name: str) -> float:
    """``LEASE_SECONDS`` / ``LEASE_WAIT_SECONDS``: 0 (single flight off) to an hour."""
    value = reader.get(name)
    if _is_number(value) and math.isfinite(value) and 0 <= value <= MAX_LEASE_SECONDS:
        return float(value)
    reader.problem(
        name, "lease", f"must be a number of seconds from 0 (single flight off) to "
        f"{MAX_LEASE_SECONDS}, not {_shown(value)}{_unquote(value)}"
    )  # fmt: skip
    return float(DEFAULTS[name])


def _log_database(reader: _Reader) -> str | None:
    value = reader.get("LOG_DATABASE")
    aliases = sorted(django_settings.DATABASES)
    if value is None or (isinstance(value, str) and value in aliases):
        return value
    hint = did_you_mean(value, aliases) if isinstance(value, str) else ""
    reader.problem(
        "LOG_DATABASE", "alias", f"must name a database alias from DATABASES "
        f"({', '.join(aliases)}) or be None, not {value!r}{hint}"
    )  # fmt: skip
    return None if DEFAULTS["LOG_DATABASE"] not in aliases else str(DEFAULTS["LOG_DATABASE"])


def _django_caches(reader: _Reader) -> dict[str, str]:
    value = reader.get("DJANGO_CACHES")
    if not isinstance(value, dict):
        reader.problem(
            "DJANGO_CACHES", "cache", f"must map CACHES aliases to 'shared' or 'local', not "
            f"{_shown(value)}"
        )  # fmt: skip
        return {}
    aliases = sorted(getattr(django_settings, "CACHES", None) or {"default": None})
    kept: dict[str, str] = {}
    for alias, kind in value.items():
        if not isinstance(alias, str) or alias not in aliases:
            hint = did_you_mean(alias, aliases) if isinstance(alias, str) else ""
            reader.problem(
                "DJANGO_CACHES", "cache", f"has {alias!r}, which is not an alias of CACHES "
                f"({', '.join(aliases)}){hint}"
            )  # fmt: skip
        elif kind not in ("shared", "local"):
            reader.problem(
                "DJANGO_CACHES", "cache", f"maps {alias!r} to {_shown(kind)}: write 'shared' "
                "or 'local'"
            )  # fmt: skip
        else:
            kept[alias] = kind
    return kept


def read(raw: Any) -> tuple[FreshcacheSettings, tuple[Problem, ...]]:
    """Read a ``FRESHCACHE`` value: the settings to run with, and every mistake found.

    With a mistake, the settings have caching off (``enabled=False``) and defaults in place of
    the wrong values; everything valid is kept (see the module docstring).
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problem = Problem(
            "FRESHCACHE", "settings", f"FRESHCACHE must be a dict, not {type(raw).__name__}"
        )
        return replace(read({})[0], enabled=False), (problem,)
    reader = _Reader(raw)
    for name in sorted(set(map(str, raw)) - set(DEFAULTS)):
        reader.problems.append(
            Problem(name, "unknown", f"Unknown FRESHCACHE setting {name!r}"
                    f"{did_you_mean(name, DEFAULTS)}")
        )  # fmt: skip
    settings = FreshcacheSettings(
        enabled=reader.switch("ENABLED"),
        stores=_stores(reader),
        key_prefix=_key_prefix(reader),
        timeout=reader.seconds("TIMEOUT", allow_none=True),
        max_entry_size=reader.size("MAX_ENTRY_SIZE"),
        socket_timeout=reader.seconds("SOCKET_TIMEOUT"),
        connect_timeout=reader.seconds("CONNECT_TIMEOUT"),
        breaker_seconds=reader.seconds("BREAKER_SECONDS", zero=True),
        exclude=reader.strings("EXCLUDE"),
        volatile_fields=reader.strings("VOLATILE_FIELDS"),
        predicate_fields=reader.strings("PREDICATE_FIELDS"),
        header=reader.switch("HEADER", allow_none=True),
        browser_cache_control=_browser_cache_control(reader),
        max_query_params=reader.count("MAX_QUERY_PARAMS"),
        max_query_length=reader.count("MAX_QUERY_LENGTH"),
        never_cache_paths=_paths(reader),
        cache_statuses=_statuses(reader),
        log_database=_log_database(reader),
        relay=reader.switch("RELAY"),
        relay_poll_seconds=reader.seconds("RELAY_POLL_SECONDS"),
        install_triggers=reader.switch("INSTALL_TRIGGERS"),
        lease_seconds=_lease(reader, "LEASE_SECONDS"),
        lease_wait_seconds=_lease(reader, "LEASE_WAIT_SECONDS"),
        django_caches=_django_caches(reader),
    )
    if reader.problems:
        settings = replace(settings, enabled=False)
    return settings, tuple(reader.problems)


_lock = threading.Lock()
_current: tuple[FreshcacheSettings, tuple[Problem, ...]] | None = None


def _read_current() -> tuple[FreshcacheSettings, tuple[Problem, ...]]:
    global _current
    current = _current
    if current is None:
        with _lock:
            current = _current
            if current is None:
                current = _current = read(getattr(django_settings, "FRESHCACHE", None))
                if current[1]:
                    logger.warning(
                        "freshcache: caching is off because FRESHCACHE has %d error(s) "
                        "(manage.py check lists them): %s",
                        len(current[1]),
                        "; ".join(p.message for p in current[1]),
                    )
    return current


def get_settings() -> FreshcacheSettings:
    """Return the current settings (cached; reset when ``FRESHCACHE`` changes). Never raises:
    with a mistake in ``FRESHCACHE`` caching is off (see :func:`read`)."""
    return _read_current()[0]


def problems() -> tuple[Problem, ...]:
    """The mistakes in the current ``FRESHCACHE`` (reported by the system checks)."""
    return _read_current()[1]


def reset() -> None:
    """Forget the settings read (the next call reads ``FRESHCACHE`` again)."""
    global _current
    with _lock:
        _current = None


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "FRESHCACHE":
        reset()
        from . import log, stores
        from .log.relay import get_relay

        stores.reset()
        log.reset()
        get_relay().settings_changed()


# The dataclass field names, for docs and checks.
FIELD_NAMES = tuple(f.name for f in fields(FreshcacheSettings))
