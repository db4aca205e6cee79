"""The ``FRESHCACHE`` settings dict, read into a frozen dataclass.

Settings are read lazily through :func:`get_settings`, cached, and re-read whenever Django's
``setting_changed`` signal fires for ``FRESHCACHE`` (so ``override_settings`` works in tests).
Nothing is decided at import time.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

__all__ = ["DEFAULTS", "FreshcacheSettings", "get_settings"]

#: Every setting with its default, in one literal (documented in docs/settings.md).
DEFAULTS: dict[str, Any] = {
    "ENABLED": True,
    "STORE": "memory://",
    "STORES": {},
    "KEY_PREFIX": "fc",
    "TIMEOUT": None,
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
}


@dataclass(frozen=True)
class FreshcacheSettings:
    """The validated ``FRESHCACHE`` settings. Read them with :func:`get_settings`."""

    enabled: bool = True
    #: Store URLs by name; ``"default"`` always exists.
    stores: dict[str, str] = field(default_factory=lambda: {"default": "memory://"})
    key_prefix: str = "fc"
    timeout: float | None = None
    socket_timeout: float = 0.25
    connect_timeout: float = 0.25
    breaker_seconds: float = 2.0
    exclude: tuple[str, ...] = ()
    volatile_fields: tuple[str, ...] = ()
    predicate_fields: tuple[str, ...] = ()
    header: bool | None = None
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


def _tuple(name: str, value: Any) -> tuple[Any, ...]:
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise ImproperlyConfigured(f"FRESHCACHE[{name!r}] must be a list or tuple, not {value!r}")
    return tuple(value)


def _number(name: str, value: Any, *, allow_none: bool = False) -> Any:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ImproperlyConfigured(
            f"FRESHCACHE[{name!r}] must be a non-negative number, not {value!r}"
        )
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ImproperlyConfigured(f"FRESHCACHE[{name!r}] must be True or False, not {value!r}")
    return value


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ImproperlyConfigured(f"FRESHCACHE[{name!r}] must be a positive number, not {value!r}")
    return float(value)


def _alias(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value not in django_settings.DATABASES:
        raise ImproperlyConfigured(
            f"FRESHCACHE[{name!r}] must name a database alias from DATABASES "
            f"({', '.join(sorted(django_settings.DATABASES))}) or be None, not {value!r}"
        )
    return value


def _build(raw: Any) -> FreshcacheSettings:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ImproperlyConfigured(f"FRESHCACHE must be a dict, not {type(raw).__name__}")
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        known = ", ".join(sorted(DEFAULTS))
        raise ImproperlyConfigured(
            f"Unknown FRESHCACHE setting(s) {unknown}; known settings: {known}"
        )
    merged = {**DEFAULTS, **raw}
    stores = dict(merged["STORES"] or {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in stores.items()):
        raise ImproperlyConfigured("FRESHCACHE['STORES'] must map store names to URL strings")
    if "default" not in stores:
        if not isinstance(merged["STORE"], str):
            raise ImproperlyConfigured(
                "FRESHCACHE['STORE'] must be a URL string such as 'memory://'"
            )
        stores["default"] = merged["STORE"]
    return FreshcacheSettings(
        enabled=bool(merged["ENABLED"]),
        stores=stores,
        key_prefix=str(merged["KEY_PREFIX"]),
        timeout=_number("TIMEOUT", merged["TIMEOUT"], allow_none=True),
        socket_timeout=_number("SOCKET_TIMEOUT", merged["SOCKET_TIMEOUT"]),
        connect_timeout=_number("CONNECT_TIMEOUT", merged["CONNECT_TIMEOUT"]),
        breaker_seconds=_number("BREAKER_SECONDS", merged["BREAKER_SECONDS"]),
        exclude=_tuple("EXCLUDE", merged["EXCLUDE"]),
        volatile_fields=_tuple("VOLATILE_FIELDS", merged["VOLATILE_FIELDS"]),
        predicate_fields=_tuple("PREDICATE_FIELDS", merged["PREDICATE_FIELDS"]),
        header=None if merged["HEADER"] is None else bool(merged["HEADER"]),
        browser_cache_control=str(merged["BROWSER_CACHE_CONTROL"]),
        max_query_params=int(_number("MAX_QUERY_PARAMS", merged["MAX_QUERY_PARAMS"])),
        max_query_length=int(_number("MAX_QUERY_LENGTH", merged["MAX_QUERY_LENGTH"])),
        never_cache_paths=_tuple("NEVER_CACHE_PATHS", merged["NEVER_CACHE_PATHS"]),
        cache_statuses=tuple(int(s) for s in _tuple("CACHE_STATUSES", merged["CACHE_STATUSES"])),
        log_database=_alias("LOG_DATABASE", merged["LOG_DATABASE"]),
        relay=_flag("RELAY", merged["RELAY"]),
        relay_poll_seconds=_positive("RELAY_POLL_SECONDS", merged["RELAY_POLL_SECONDS"]),
        install_triggers=_flag("INSTALL_TRIGGERS", merged["INSTALL_TRIGGERS"]),
    )


@lru_cache(maxsize=1)
def get_settings() -> FreshcacheSettings:
    """Return the current settings (cached; reset when ``FRESHCACHE`` changes)."""
    return _build(getattr(django_settings, "FRESHCACHE", None))


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "FRESHCACHE":
        get_settings.cache_clear()
        from . import log, stores
        from .log.relay import get_relay

        stores.reset()
        log.reset()
        get_relay().settings_changed()


# The dataclass field names, for docs and checks.
FIELD_NAMES = tuple(f.name for f in fields(FreshcacheSettings))
