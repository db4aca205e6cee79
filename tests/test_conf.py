"""The ``FRESHCACHE`` settings dict: defaults, validation messages, and ``override_settings``."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

import freshcache
from freshcache.conf import DEFAULTS, FreshcacheSettings, get_settings
from freshcache.stores.memory import MemoryStore


def settings_from(raw: Any) -> FreshcacheSettings:
    with override_settings(FRESHCACHE=raw):
        return get_settings()


def test_defaults_are_pinned() -> None:
    assert DEFAULTS == {
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


@pytest.mark.parametrize("raw", [None, {}])
def test_absent_or_empty_settings_give_the_defaults(raw: Any) -> None:
    assert settings_from(raw) == FreshcacheSettings(
        enabled=True,
        stores={"default": "memory://"},
        key_prefix="fc",
        timeout=None,
        socket_timeout=0.25,
        connect_timeout=0.25,
        breaker_seconds=2.0,
        exclude=("sessions", "migrations", "admin.LogEntry", "contenttypes", "freshcache"),
        volatile_fields=(),
        predicate_fields=(),
        header=None,
        browser_cache_control="no-cache",
        max_query_params=50,
        max_query_length=2048,
        never_cache_paths=(),
        cache_statuses=(200,),
        log_database="default",
        relay=True,
        relay_poll_seconds=1.0,
        install_triggers=True,
    )


def test_store_and_stores() -> None:
    assert settings_from({"STORE": "database://"}).stores == {"default": "database://"}
    both = settings_from({"STORE": "database://", "STORES": {"fast": "memory://"}})
    assert both.stores == {"default": "database://", "fast": "memory://"}
    # An explicit "default" in STORES wins over STORE.
    assert settings_from({"STORE": "database://", "STORES": {"default": "memory://"}}).stores == {
        "default": "memory://"
    }


def test_unknown_key_lists_the_known_keys() -> None:
    with pytest.raises(ImproperlyConfigured) as info:
        settings_from({"STOER": "memory://"})
    assert str(info.value) == (
        "Unknown FRESHCACHE setting(s) ['STOER']; known settings: BREAKER_SECONDS, "
        "BROWSER_CACHE_CONTROL, CACHE_STATUSES, CONNECT_TIMEOUT, ENABLED, EXCLUDE, HEADER, "
        "INSTALL_TRIGGERS, KEY_PREFIX, LOG_DATABASE, MAX_QUERY_LENGTH, MAX_QUERY_PARAMS, "
        "NEVER_CACHE_PATHS, PREDICATE_FIELDS, RELAY, RELAY_POLL_SECONDS, SOCKET_TIMEOUT, "
        "STORE, STORES, TIMEOUT, VOLATILE_FIELDS"
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("memory://", "FRESHCACHE must be a dict, not str"),
        ({"STORE": 5}, "FRESHCACHE['STORE'] must be a URL string such as 'memory://'"),
        ({"STORES": {"a": 1}}, "FRESHCACHE['STORES'] must map store names to URL strings"),
        (
            {"SOCKET_TIMEOUT": "0.25"},
            "FRESHCACHE['SOCKET_TIMEOUT'] must be a non-negative number, not '0.25'",
        ),
        (
            {"BREAKER_SECONDS": -1},
            "FRESHCACHE['BREAKER_SECONDS'] must be a non-negative number, not -1",
        ),
        ({"TIMEOUT": True}, "FRESHCACHE['TIMEOUT'] must be a non-negative number, not True"),
        (
            {"EXCLUDE": "sessions"},
            "FRESHCACHE['EXCLUDE'] must be a list or tuple, not 'sessions'",
        ),
        (
            {"CACHE_STATUSES": 200},
            "FRESHCACHE['CACHE_STATUSES'] must be a list or tuple, not 200",
        ),
        (
            {"LOG_DATABASE": "replica"},
            "FRESHCACHE['LOG_DATABASE'] must name a database alias from DATABASES (default) "
            "or be None, not 'replica'",
        ),
        ({"RELAY": "False"}, "FRESHCACHE['RELAY'] must be True or False, not 'False'"),
        (
            {"RELAY_POLL_SECONDS": 0},
            "FRESHCACHE['RELAY_POLL_SECONDS'] must be a positive number, not 0",
        ),
        (
            {"INSTALL_TRIGGERS": 1},
            "FRESHCACHE['INSTALL_TRIGGERS'] must be True or False, not 1",
        ),
    ],
)
def test_bad_values_are_named_in_the_error(raw: Any, message: str) -> None:
    with pytest.raises(ImproperlyConfigured) as info:
        settings_from(raw)
    assert str(info.value) == message


def test_timeout_may_be_none_or_a_number() -> None:
    assert settings_from({"TIMEOUT": None}).timeout is None
    assert settings_from({"TIMEOUT": 3600}).timeout == 3600


def test_override_settings_is_seen_and_resets_the_stores() -> None:
    before = freshcache.store()
    with override_settings(FRESHCACHE={"STORE": "memory://?max_entries=3", "KEY_PREFIX": "x"}):
        assert get_settings().key_prefix == "x"
        inside = freshcache.store()
        assert inside is not before
        assert isinstance(inside, MemoryStore)
        assert inside.max_entries == 3
        assert freshcache.store() is inside  # one store per configuration, reused
    after = freshcache.store()
    assert after is not inside
    assert get_settings().key_prefix == "fc"


def test_settings_are_read_lazily_and_cached() -> None:
    with override_settings(FRESHCACHE={"KEY_PREFIX": "lazy"}):
        assert get_settings() is get_settings()


def test_other_settings_do_not_reset_the_stores() -> None:
    store = freshcache.store()
    with override_settings(DEBUG=True):
        assert freshcache.store() is store


def test_a_store_named_but_not_configured_is_a_clear_error() -> None:
    with pytest.raises(ImproperlyConfigured) as info:
        freshcache.store("nope")
    assert str(info.value) == "No freshcache store named 'nope'; FRESHCACHE['STORES'] has: default"
