"""How each ``FRESHCACHE`` setting is read: a valid value, or its default and a :class:`Problem`.

:func:`freshcache.conf.read` calls these once per setting, in the order of
:class:`~freshcache.conf.FreshcacheSettings`. Each reader returns a value the settings can run
with and never raises: a wrong value is recorded (its setting, its kind, a message naming the
value and the fix) and replaced by the default; in a list, the bad entry is left out and the
others kept. The defaults are the caller's (``conf.DEFAULTS``), so this module imports nothing
of freshcache's.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from django.conf import settings as django_settings

__all__ = [
    "MAX_LEASE_SECONDS",
    "Problem",
    "Reader",
    "closest",
    "did_you_mean",
    "read_browser_cache_control",
    "read_cache_statuses",
    "read_django_caches",
    "read_key_prefix",
    "read_lease",
    "read_log_database",
    "read_never_cache_paths",
    "read_stores",
]

#: The longest lease (seconds): a render that takes longer is not worth making others wait for.
MAX_LEASE_SECONDS = 3600


class Problem(NamedTuple):
    """One mistake in ``FRESHCACHE``: the setting, the kind of mistake (the system checks give
    each kind its id and hint), and a message naming the value and, where it is known, the fix."""

    setting: str
    kind: str
    message: str


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``word`` (ignoring case), if one is close enough."""
    by_lower = {c.lower(): c for c in candidates}
    match = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.7)
    return by_lower[match[0]] if match else None


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'X'?)`` when a candidate is close to ``word``, else ``""``."""
    match = closest(word, candidates)
    return f" (did you mean {match!r}?)" if match is not None else ""


class Reader:
    """Reads one ``FRESHCACHE`` dict; each method returns a valid value and records mistakes."""

    def __init__(self, raw: dict[str, Any], defaults: Mapping[str, Any]) -> None:
        self.raw = raw
        #: Every setting's default (``conf.DEFAULTS``).
        self.defaults = defaults
        self.problems: list[Problem] = []

    def problem(self, name: str, kind: str, message: str) -> None:
        self.problems.append(Problem(name, kind, f"FRESHCACHE[{name!r}] {message}"))

    def get(self, name: str) -> Any:
        return self.raw.get(name, self.defaults[name])

    def switch(self, name: str, *, allow_none: bool = False) -> Any:
        value = self.get(name)
        if isinstance(value, bool) or (value is None and allow_none):
            return value
        # "False" is a non-empty string, true in Python: the very mistake worth naming.
        meant = _meant_switch(value)
        fix = f"write {meant} without quotes" if isinstance(value, str) else f"write {meant}"
        choices = "True, False or None" if allow_none else "True or False"
        self.problem(name, "switch", f"must be {choices}, not {_shown(value)} ({fix})")
        return self.defaults[name]

    def seconds(self, name: str, *, zero: bool = False, allow_none: bool = False) -> Any:
        value = self.get(name)
        if value is None and allow_none:
            return None
        if _is_number(value) and math.isfinite(value) and (value > 0 or (zero and value == 0)):
            return value
        wanted = "a number of seconds, 0 or more" if zero else "a positive number of seconds"
        wanted += ", or None" if allow_none else ""
        self.problem(name, "seconds", f"must be {wanted}, not {_shown(value)}{_unquote(value)}")
        return self.defaults[name]

    def count(self, name: str) -> int:
        value = self.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        self.problem(
            name, "count", f"must be a positive integer, not {_shown(value)}{_unquote(value)}"
        )
        return int(self.defaults[name])

    def size(self, name: str) -> int | None:
        """A number of bytes (a positive integer), or None for no limit."""
        value = self.get(name)
        if value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            return value
        self.problem(
            name, "size", "must be a positive whole number of bytes, or None, not "
            f"{_shown(value)}{_unquote(value)}"
        )  # fmt: skip
        return int(self.defaults[name])

    def text(self, name: str, what: str) -> Any:
        value = self.get(name)
        if isinstance(value, str):
            return value
        self.problem(name, "type", f"must be {what}, not {_shown(value)}")
        return self.defaults[name]

    def items(self, name: str, what: str) -> tuple[Any, ...]:
        value = self.get(name)
        if isinstance(value, list | tuple | set | frozenset):
            return tuple(value)
        fix = f" (write [{value!r}])" if isinstance(value, str | int) else ""
        self.problem(name, "type", f"must be a list of {what}, not {_shown(value)}{fix}")
        return tuple(self.defaults[name])

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


def read_stores(reader: Reader) -> dict[str, str]:
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


def read_key_prefix(reader: Reader) -> str:
    value = reader.get("KEY_PREFIX")
    if isinstance(value, str) and value and "{" not in value and "}" not in value:
        return value
    # Redis keys are "{PREFIX}:...": a brace in the prefix would end Redis Cluster's hash tag.
    reader.problem(
        "KEY_PREFIX", "type", f"must be a non-empty string without braces, not {_shown(value)}"
    )
    return str(reader.defaults["KEY_PREFIX"])


def read_browser_cache_control(reader: Reader) -> str:
    if reader.get("BROWSER_CACHE_CONTROL") is None:
        return ""  # None: send no Cache-Control, like ""
    value = reader.text("BROWSER_CACHE_CONTROL", "a Cache-Control value string, or None")
    if any(not (c.isprintable() and c.isascii()) for c in str(value)):
        # A newline would make every page response a BadHeaderError (a 500).
        reader.problem(
            "BROWSER_CACHE_CONTROL",
            "type",
            f"must be a Cache-Control value string, or None, not {value!r} (it holds a newline "
            "or another character a header cannot carry)",
        )
        return str(reader.defaults["BROWSER_CACHE_CONTROL"])
    return str(value)


def read_cache_statuses(reader: Reader) -> tuple[int, ...]:
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
    return tuple(kept) or tuple(reader.defaults["CACHE_STATUSES"])


def read_never_cache_paths(reader: Reader) -> tuple[str, ...]:
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


def read_lease(reader: Reader, name: str) -> float:
    """``LEASE_SECONDS`` / ``LEASE_WAIT_SECONDS``: 0 (single flight off) to an hour."""
    value = reader.get(name)
    if _is_number(value) and math.isfinite(value) and 0 <= value <= MAX_LEASE_SECONDS:
        return float(value)
    reader.problem(
        name, "lease", f"must be a number of seconds from 0 (single flight off) to "
        f"{MAX_LEASE_SECONDS}, not {_shown(value)}{_unquote(value)}"
    )  # fmt: skip
    return float(reader.defaults[name])


def read_log_database(reader: Reader) -> str | None:
    value = reader.get("LOG_DATABASE")
    aliases = sorted(django_settings.DATABASES)
    if value is None or (isinstance(value, str) and value in aliases):
        return value
    hint = did_you_mean(value, aliases) if isinstance(value, str) else ""
    reader.problem(
        "LOG_DATABASE", "alias", f"must name a database alias from DATABASES "
        f"({', '.join(aliases)}) or be None, not {value!r}{hint}"
    )  # fmt: skip
    default = reader.defaults["LOG_DATABASE"]
    return None if default not in aliases else str(default)


def read_django_caches(reader: Reader) -> dict[str, str]:
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
