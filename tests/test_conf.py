"""The ``FRESHCACHE`` settings dict: defaults, validation messages, and ``override_settings``."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

import freshcache
from freshcache.conf import DEFAULTS, FreshcacheSettings, Problem, get_settings, problems, read
from freshcache.stores import UnusableStore
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
        "EDGE": {},
        "METRICS": False,
        "JOURNAL": True,
        "READ_REPLICAS": {},
        "REPLICA_WAIT_SECONDS": 0.1,
        "SHADOW": None,
        "EARLY_HITS_TRUSTED_MIDDLEWARE": (),
    }


@pytest.mark.parametrize("raw", [None, {}])
def test_absent_or_empty_settings_give_the_defaults(raw: Any) -> None:
    assert settings_from(raw) == FreshcacheSettings(
        enabled=True,
        stores={"default": "memory://"},
        key_prefix="fc",
        timeout=86400,
        max_entry_size=1048576,
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
        lease_seconds=10.0,
        lease_wait_seconds=5.0,
        django_caches={},
    )


def test_store_and_stores() -> None:
    assert settings_from({"STORE": "database://"}).stores == {"default": "database://"}
    both = settings_from({"STORE": "database://", "STORES": {"fast": "memory://"}})
    assert both.stores == {"default": "database://", "fast": "memory://"}
    # An explicit "default" in STORES wins over STORE.
    assert settings_from({"STORE": "database://", "STORES": {"default": "memory://"}}).stores == {
        "default": "memory://"
    }


def test_unknown_key_is_a_problem_naming_the_closest() -> None:
    settings, problems = read({"STOER": "memory://", "ENABLED": True})
    assert problems == (
        Problem("STOER", "unknown", "Unknown FRESHCACHE setting 'STOER' (did you mean 'STORE'?)"),
    )
    assert settings == replace(read({})[0], enabled=False)


@pytest.mark.parametrize(
    ("raw", "problems"),
    [
        ("memory://", [("FRESHCACHE", "settings", "FRESHCACHE must be a dict, not str")]),
        ({"STORE": 5}, [("STORE", "type", "FRESHCACHE['STORE'] must be a URL string such as "
                         "'memory://', not 5")]),
        ({"STORES": {"a": 1, "": "memory://"}}, [
            ("STORES", "type", "FRESHCACHE['STORES'] must map store names to URL strings, not "
             "'a' to 1"),
            ("STORES", "type", "FRESHCACHE['STORES'] must map store names to URL strings, not "
             "'' to the string 'memory://'"),
        ]),
        ({"SOCKET_TIMEOUT": "0.25"}, [("SOCKET_TIMEOUT", "seconds", "FRESHCACHE['SOCKET_TIMEOUT'] "
                                       "must be a positive number of seconds, not the string "
                                       "'0.25' (write 0.25 without quotes)")]),
        ({"TIMEOUT": True}, [("TIMEOUT", "seconds", "FRESHCACHE['TIMEOUT'] must be a positive "
                              "number of seconds, or None, not True")]),
        ({"TIMEOUT": float("nan")}, [("TIMEOUT", "seconds", "FRESHCACHE['TIMEOUT'] must be a "
                                      "positive number of seconds, or None, not nan")]),
        ({"MAX_ENTRY_SIZE": 0}, [("MAX_ENTRY_SIZE", "size", "FRESHCACHE['MAX_ENTRY_SIZE'] must be "
                                  "a positive whole number of bytes, or None, not 0")]),
        ({"MAX_ENTRY_SIZE": "1048576"}, [("MAX_ENTRY_SIZE", "size", "FRESHCACHE['MAX_ENTRY_SIZE'] "
                                          "must be a positive whole number of bytes, or None, not "
                                          "the string '1048576' (write 1048576 without quotes)")]),
        ({"MAX_ENTRY_SIZE": 1.5e6}, [("MAX_ENTRY_SIZE", "size", "FRESHCACHE['MAX_ENTRY_SIZE'] must "
                                      "be a positive whole number of bytes, or None, not "
                                      "1500000.0")]),
        ({"ENABLED": "False"}, [("ENABLED", "switch", "FRESHCACHE['ENABLED'] must be True or "
                                 "False, not the string 'False' (write False without quotes)")]),
        ({"ENABLED": "maybe"}, [("ENABLED", "switch", "FRESHCACHE['ENABLED'] must be True or "
                                 "False, not the string 'maybe' (write True or False without "
                                 "quotes)")]),
        ({"RELAY": 0}, [("RELAY", "switch", "FRESHCACHE['RELAY'] must be True or False, not 0 "
                         "(write False)")]),
        ({"EXCLUDE": 3}, [("EXCLUDE", "type", "FRESHCACHE['EXCLUDE'] must be a list of strings, "
                           "not 3 (write [3])")]),
        ({"EXCLUDE": {"sessions": 1}}, [("EXCLUDE", "type", "FRESHCACHE['EXCLUDE'] must be a "
                                         "list of strings, not {'sessions': 1}")]),
        ({"CACHE_STATUSES": [200, 500, 599, 600]}, [
            ("CACHE_STATUSES", "error_status", "FRESHCACHE['CACHE_STATUSES'] has 500, a server "
             "error: freshcache never stores a 5xx response"),
            ("CACHE_STATUSES", "error_status", "FRESHCACHE['CACHE_STATUSES'] has 599, a server "
             "error: freshcache never stores a 5xx response"),
            ("CACHE_STATUSES", "status", "FRESHCACHE['CACHE_STATUSES'] must list HTTP status "
             "codes (integers from 100 to 599); it has 600"),
        ]),
        ({"LOG_DATABASE": "replica"}, [("LOG_DATABASE", "alias", "FRESHCACHE['LOG_DATABASE'] "
                                        "must name a database alias from DATABASES (default) or "
                                        "be None, not 'replica'")]),
        ({"LOG_DATABASE": 0}, [("LOG_DATABASE", "alias", "FRESHCACHE['LOG_DATABASE'] must name a "
                                "database alias from DATABASES (default) or be None, not 0")]),
        ({"RELAY_POLL_SECONDS": 0}, [("RELAY_POLL_SECONDS", "seconds", "FRESHCACHE["
                                      "'RELAY_POLL_SECONDS'] must be a positive number of "
                                      "seconds, not 0")]),
        ({"KEY_PREFIX": ""}, [("KEY_PREFIX", "type", "FRESHCACHE['KEY_PREFIX'] must be a "
                               "non-empty string without braces, not the string ''")]),
        ({"MAX_QUERY_LENGTH": True}, [("MAX_QUERY_LENGTH", "count", "FRESHCACHE["
                                       "'MAX_QUERY_LENGTH'] must be a positive integer, not "
                                       "True")]),
    ],
)  # fmt: skip
def test_bad_values_are_named_in_problems(raw: Any, problems: list[tuple[str, ...]]) -> None:
    settings, found = read(raw)
    assert [tuple(p) for p in found] == problems
    assert settings.enabled is False  # a mistake turns caching off, in every process


def test_get_settings_never_raises_and_keeps_what_is_valid() -> None:
    """Only the wrong value is replaced (its default, or the list's valid entries are kept):
    the stores and the log still receive this process's invalidations."""
    raw = {
        "STORE": "database://",
        "STORES": {"pages": "memory://", "bad": 5},
        "KEY_PREFIX": "site",
        "SOCKET_TIMEOUT": "fast",
        "EXCLUDE": ["sessions", 5, "blog.Tag"],
        "VOLATILE_FIELDS": ["blog.Post.view_count"],
        "NEVER_CACHE_PATHS": ["/admin/", "api/"],
        "CACHE_STATUSES": [200, 404, 503],
        "LOG_DATABASE": None,
    }
    assert settings_from(raw) == FreshcacheSettings(
        enabled=False,
        stores={"default": "database://", "pages": "memory://"},
        key_prefix="site",
        socket_timeout=0.25,
        exclude=("sessions", "blog.Tag"),
        volatile_fields=("blog.Post.view_count",),
        never_cache_paths=("/admin/",),
        cache_statuses=(200, 404),
        log_database=None,
    )
    with override_settings(FRESHCACHE=raw):
        assert [p.setting for p in problems()] == [
            "STORES", "SOCKET_TIMEOUT", "EXCLUDE", "NEVER_CACHE_PATHS", "CACHE_STATUSES",
        ]  # fmt: skip


def test_one_warning_per_configuration(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="freshcache")
    with override_settings(FRESHCACHE={"ENABLED": "False", "MAX_QUERY_PARAMS": 0}):
        for _ in range(5):
            assert get_settings().enabled is False
            assert len(problems()) == 2
    with override_settings(FRESHCACHE={"ENABLED": True}):
        assert get_settings().enabled is True
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "freshcache",
            "WARNING",
            "freshcache: caching is off because FRESHCACHE has 2 error(s) (manage.py check lists "
            "them): FRESHCACHE['ENABLED'] must be True or False, not the string 'False' (write "
            "False without quotes); FRESHCACHE['MAX_QUERY_PARAMS'] must be a positive integer, "
            "not 0",
        )
    ]


def test_browser_cache_control_none_sends_none() -> None:
    assert settings_from({"BROWSER_CACHE_CONTROL": None}).browser_cache_control == ""
    assert settings_from({"BROWSER_CACHE_CONTROL": "private"}).browser_cache_control == "private"


def test_timeout_may_be_none_or_a_number() -> None:
    assert settings_from({}).timeout == 86400  # a day: Redis volatile-* policies can evict
    assert settings_from({"TIMEOUT": None}).timeout is None
    assert settings_from({"TIMEOUT": 3600}).timeout == 3600


def test_max_entry_size_may_be_none_or_bytes() -> None:
    assert settings_from({}).max_entry_size == 1048576
    assert settings_from({"MAX_ENTRY_SIZE": None}).max_entry_size is None
    assert settings_from({"MAX_ENTRY_SIZE": 10}).max_entry_size == 10


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


def test_a_store_name_lost_to_a_mistake_is_unusable_not_an_error() -> None:
    """``STORES`` that is not a dict loses every name: code naming one must not fail."""
    with override_settings(FRESHCACHE={"STORES": ["memory://"]}):
        store = freshcache.store("pages")
        assert isinstance(store, UnusableStore)
        assert freshcache.store("pages") is store


def test_the_readme_configuration_is_valid_and_names_every_setting() -> None:
    """The README's ``FRESHCACHE`` example is read without a mistake and shows every setting
    except the ones only a few sites need (documented in docs/settings.md)."""
    import ast
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1]
    block = re.search(r"```python\nFRESHCACHE = (\{.*?\n\})\n```", section, re.S)
    assert block is not None, "the README's configuration block moved"
    raw = ast.literal_eval(block.group(1))
    settings, found = read(raw)
    assert found == ()
    assert settings.enabled
    rare = {
        "HEADER", "BROWSER_CACHE_CONTROL", "MAX_QUERY_PARAMS", "MAX_QUERY_LENGTH",
        "NEVER_CACHE_PATHS", "CACHE_STATUSES", "PREDICATE_FIELDS", "RELAY_POLL_SECONDS",
        "INSTALL_TRIGGERS", "EDGE", "METRICS", "JOURNAL", "READ_REPLICAS", "REPLICA_WAIT_SECONDS",
        "SHADOW", "EARLY_HITS_TRUSTED_MIDDLEWARE",
    }  # fmt: skip
    assert set(DEFAULTS) - set(raw) <= rare
