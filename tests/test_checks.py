"""System checks: each id, compared as a whole message (msg, hint, id), as docs/checks.md lists."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import Error, Info, Warning, run_checks
from django.db import models
from django.test import override_settings
from django.test.utils import isolate_apps

from freshcache.checks import _check_labels, check_settings
from freshcache.conf import DEFAULTS, FreshcacheSettings
from tests.helpers import RedisServer, free_port

MEMORY_HINT = (
    "The memory store lives in one process: writes made by other processes (other workers, "
    "manage.py shell) do not invalidate it. Use database:// or redis:// in production."
)
REDIS_HINT = (
    "freshcache computes uncached while Redis is down; check the URL and that the server is "
    "running."
)
KNOWN_HINT = "Known settings: " + ", ".join(sorted(DEFAULTS)) + ". See docs/settings.md."
TYPE_HINT = "See docs/settings.md for the type of every setting."
SIZE_HINT = (
    "Write a whole number of bytes greater than 0, without quotes (1048576 is 1 MiB), or None "
    "for no limit."
)
SWITCH_HINT = (
    "Write True or False, without quotes: a non-empty string, 'False' too, is true in Python, "
    "so the setting would stay on."
)
SECONDS_HINT = "Write a number of seconds (an int or a float), without quotes."
LEASE_HINT = (
    "Write a number of seconds without quotes, from 0 to 3600: LEASE_SECONDS longer than a slow "
    "render, LEASE_WAIT_SECONDS as long as a request may wait for another's render (0 in either "
    "turns single flight off). See docs/settings.md."
)
COUNT_HINT = "Write a whole number greater than 0, without quotes."
STATUS_HINT = "Write status codes as integers, e.g. [200, 301, 404]."
ERROR_STATUS_HINT = (
    "Remove it: a stored error would be served after its cause is gone. 5xx responses are "
    "never stored, whatever this setting says."
)
PATH_HINT = "Write each path prefix as request.path spells it, starting with '/' (e.g. '/admin/')."
ALIAS_HINT = "Name an alias from DATABASES, or None to turn the invalidation log off."
CACHE_HINT = (
    "Map aliases of CACHES to 'shared' (the same values in every process) or 'local'. See "
    "docs/settings.md."
)
EDGE_HINT = (
    "Write EDGE as a dict: 'KEYS' lists the edges in front of the site (akamai, cloudflare, "
    "fastly, varnish), 'SEND_KEYS' is True or False, 'MAX_HEADER_BYTES' a whole number of bytes "
    "or None, 'PURGERS' a list of dicts with a 'BACKEND' and its options, 'PUBLISH' a dict "
    "with an absolute 'ROOT' and a list of 'URLS' patterns. See docs/edge.md."
)
SHADOW_HINT = (
    "Write SHADOW as a dict: 'RATE' the share of page hits to re-render, a number from 0 to 1 "
    "(0.01 is 1%), 'EXCLUDE' a list of path patterns never re-rendered, 'QUEUE_SIZE' a whole "
    "number greater than 0. See docs/observability.md."
)
REPLICAS_HINT = (
    "Map the alias of each read replica to the alias of the database it replicates, both from "
    "DATABASES, such as {'replica': 'default'}. See docs/scaling.md."
)
URL_HINT = "Check the host, port and options; see docs/settings.md for store URLs."
REDIS_OPTIONS = (
    "breaker_seconds, client_name, connect_timeout, db, max_connections, near_cache, "
    "near_heartbeat, password, prefix, socket_keepalive, socket_timeout, username"
)
UNKNOWN_MODEL_HINT = (
    "Name an installed app and one of its models as Model._meta.label spells them (e.g. "
    "'blog.Post'). Until then the entry is ignored."
)
UNKNOWN_FIELD_HINT = (
    "Name a field stored in the model's own table, by its name: app_label.ModelName.field_name. "
    "Until then the entry is ignored."
)
UNKEYABLE_HINT = (
    "Remove it: reads that filter on it then depend on the whole table (still fresh, "
    "invalidated more often). freshcache keys integers, strings without db_collation, UUIDs "
    "and booleans; to key this value, keep it in such a column too (a price as a whole number "
    "of cents, a date as its ISO text)."
)


@pytest.fixture(autouse=True)
def _shared_django_cache() -> Iterator[None]:
    """Django's default CACHES is process-local: W005 with every shared store. These tests are
    about the other checks; the W005 tests below set CACHES themselves."""
    dummy = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    with override_settings(CACHES=dummy):
        yield


def checks(**freshcache: Any) -> list[Any]:
    with override_settings(FRESHCACHE=freshcache):
        return check_settings()


def test_registered_under_the_freshcache_tag() -> None:
    with override_settings(FRESHCACHE={"BOGUS": 1}):
        ids = [m.id for m in run_checks(tags=["freshcache"])]
    assert ids == ["freshcache.E001"]


def test_defaults_in_debug_are_clean() -> None:
    with override_settings(DEBUG=True):
        assert checks() == []


def test_every_setting_with_a_valid_value_is_clean() -> None:
    """The other side of the table below: each setting given a valid, non-default value."""
    with override_settings(DEBUG=True):
        assert checks(
            ENABLED=False, STORE="memory://?max_entries=10&max_tags=20",
            STORES={"db": "database://?alias=default", "pages": "memory://"},
            KEY_PREFIX="site", TIMEOUT=3600, SOCKET_TIMEOUT=1, CONNECT_TIMEOUT=0.5,
            BREAKER_SECONDS=0, EXCLUDE=["sessions", "auth", "blog.Tag", "Blog.post_tags"],
            VOLATILE_FIELDS=["blog.Post.view_count", "capture_app.Group.hits"],
            PREDICATE_FIELDS=["blog.Comment.author_name", "blog.comment.APPROVED",
                              "blog.Post.author", "capture_app.Token.id"],
            HEADER=False, BROWSER_CACHE_CONTROL=None, MAX_QUERY_PARAMS=1, MAX_QUERY_LENGTH=10,
            NEVER_CACHE_PATHS=("/admin/", "/api"), CACHE_STATUSES={200, 301, 404},
            LOG_DATABASE=None, RELAY=False, RELAY_POLL_SECONDS=0.1, INSTALL_TRIGGERS=False,
            DJANGO_CACHES={"default": "shared"},
        ) == []  # fmt: skip


def test_e001_unknown_setting_names_the_closest() -> None:
    assert checks(STORE="memory://", BOGUS=1, TIMEOUTS=3) == [
        Error("Unknown FRESHCACHE setting 'BOGUS'", hint=KNOWN_HINT, id="freshcache.E001"),
        Error(
            "Unknown FRESHCACHE setting 'TIMEOUTS' (did you mean 'TIMEOUT'?)",
            hint=KNOWN_HINT,
            id="freshcache.E001",
        ),
    ]


def test_e001_not_a_dict() -> None:
    with override_settings(FRESHCACHE=["memory://"]):
        assert check_settings() == [
            Error(
                "FRESHCACHE must be a dict, not list",
                hint="See docs/settings.md for every setting.",
                id="freshcache.E001",
            )
        ]


def E(message: str, hint: str, number: int) -> Error:
    return Error(message, hint=hint, id=f"freshcache.E{number:03}")


#: Every kind of wrong value ``conf.read`` finds, with the exact error it gives (E006 to E013).
#: The first entries are issue 9's: each was reported as "no issues".
BAD_VALUES = [
    ({"ENABLED": "False"}, [E("FRESHCACHE['ENABLED'] must be True or False, not the string "
                              "'False' (write False without quotes)", SWITCH_HINT, 7)]),
    ({"CACHE_STATUSES": [200, 503]}, [E("FRESHCACHE['CACHE_STATUSES'] has 503, a server error: "
                                        "freshcache never stores a 5xx response",
                                        ERROR_STATUS_HINT, 11)]),
    ({"RELAY": 1}, [E("FRESHCACHE['RELAY'] must be True or False, not 1 (write True)",
                      SWITCH_HINT, 7)]),
    ({"METRICS": "true"}, [E("FRESHCACHE['METRICS'] must be True or False, not the string "
                             "'true' (write True without quotes)", SWITCH_HINT, 7)]),
    ({"JOURNAL": "on"}, [E("FRESHCACHE['JOURNAL'] must be True or False, not the string "
                           "'on' (write True without quotes)", SWITCH_HINT, 7)]),
    ({"READ_REPLICAS": {"replica": "defualt"}}, [E(
        "FRESHCACHE['READ_REPLICAS'] names 'replica' as a replica, but DATABASES has no such "
        "alias (default)", REPLICAS_HINT, 25)]),
    ({"REPLICA_WAIT_SECONDS": -1}, [E("FRESHCACHE['REPLICA_WAIT_SECONDS'] must be a number of "
                                      "seconds, 0 or more, not -1", SECONDS_HINT, 8)]),
    ({"SHADOW": {"RATE": 2}}, [E("FRESHCACHE['SHADOW']['RATE'] must be a number from 0 to 1, "
                                 "without quotes, not 2 (a share: write 0.02 for 2%)",
                                 SHADOW_HINT, 24)]),
    ({"INSTALL_TRIGGERS": "yes"}, [E("FRESHCACHE['INSTALL_TRIGGERS'] must be True or False, "
                                     "not the string 'yes' (write True without quotes)",
                                     SWITCH_HINT, 7)]),
    ({"HEADER": "on"}, [E("FRESHCACHE['HEADER'] must be True, False or None, not the string "
                          "'on' (write True without quotes)", SWITCH_HINT, 7)]),
    ({"SOCKET_TIMEOUT": "fast"}, [E("FRESHCACHE['SOCKET_TIMEOUT'] must be a positive number of "
                                    "seconds, not the string 'fast'", SECONDS_HINT, 8)]),
    ({"CONNECT_TIMEOUT": "0.5"}, [E("FRESHCACHE['CONNECT_TIMEOUT'] must be a positive number "
                                    "of seconds, not the string '0.5' (write 0.5 without "
                                    "quotes)", SECONDS_HINT, 8)]),
    ({"TIMEOUT": 0}, [E("FRESHCACHE['TIMEOUT'] must be a positive number of seconds, or None, "
                        "not 0", SECONDS_HINT, 8)]),
    ({"MAX_ENTRY_SIZE": "1mb"}, [E("FRESHCACHE['MAX_ENTRY_SIZE'] must be a positive whole "
                                   "number of bytes, or None, not the string '1mb'", SIZE_HINT,
                                   19)]),
    ({"MAX_ENTRY_SIZE": -1}, [E("FRESHCACHE['MAX_ENTRY_SIZE'] must be a positive whole number "
                                "of bytes, or None, not -1", SIZE_HINT, 19)]),
    ({"BREAKER_SECONDS": -1}, [E("FRESHCACHE['BREAKER_SECONDS'] must be a number of seconds, 0 "
                                 "or more, not -1", SECONDS_HINT, 8)]),
    ({"RELAY_POLL_SECONDS": float("inf")}, [E("FRESHCACHE['RELAY_POLL_SECONDS'] must be a "
                                              "positive number of seconds, not inf",
                                              SECONDS_HINT, 8)]),
    ({"MAX_QUERY_PARAMS": 0}, [E("FRESHCACHE['MAX_QUERY_PARAMS'] must be a positive integer, "
                                 "not 0", COUNT_HINT, 9)]),
    ({"MAX_QUERY_LENGTH": 2048.0}, [E("FRESHCACHE['MAX_QUERY_LENGTH'] must be a positive "
                                      "integer, not 2048.0", COUNT_HINT, 9)]),
    ({"CACHE_STATUSES": [200, "404", True, 99]}, [
        E("FRESHCACHE['CACHE_STATUSES'] must list HTTP status codes (integers from 100 to 599); "
          "it has the string '404' (write 404 without quotes)", STATUS_HINT, 10),
        E("FRESHCACHE['CACHE_STATUSES'] must list HTTP status codes (integers from 100 to 599); "
          "it has True", STATUS_HINT, 10),
        E("FRESHCACHE['CACHE_STATUSES'] must list HTTP status codes (integers from 100 to 599); "
          "it has 99", STATUS_HINT, 10),
    ]),
    ({"CACHE_STATUSES": 200}, [E("FRESHCACHE['CACHE_STATUSES'] must be a list of HTTP status "
                                 "codes, not 200 (write [200])", TYPE_HINT, 6)]),
    ({"NEVER_CACHE_PATHS": ["/admin/", "api/"]}, [E("FRESHCACHE['NEVER_CACHE_PATHS'] has 'api/', "
                                                    "which does not start with '/' and so "
                                                    "matches no request path (write '/api/')",
                                                    PATH_HINT, 12)]),
    ({"LOG_DATABASE": "defualt"}, [E("FRESHCACHE['LOG_DATABASE'] must name a database alias "
                                     "from DATABASES (default) or be None, not 'defualt' (did "
                                     "you mean 'default'?)", ALIAS_HINT, 13)]),
    ({"EXCLUDE": "sessions"}, [E("FRESHCACHE['EXCLUDE'] must be a list of strings, not the "
                                 "string 'sessions' (write ['sessions'])", TYPE_HINT, 6)]),
    ({"VOLATILE_FIELDS": ["blog.Post.view_count", None]}, [
        E("FRESHCACHE['VOLATILE_FIELDS'] must be a list of strings; it has None", TYPE_HINT, 6)
    ]),
    ({"PREDICATE_FIELDS": ("blog.Post.author", 3)}, [
        E("FRESHCACHE['PREDICATE_FIELDS'] must be a list of strings; it has 3", TYPE_HINT, 6)
    ]),
    ({"STORE": 5}, [E("FRESHCACHE['STORE'] must be a URL string such as 'memory://', not 5",
                      TYPE_HINT, 6)]),
    ({"STORES": {"pages": 1}}, [E("FRESHCACHE['STORES'] must map store names to URL strings, "
                                  "not 'pages' to 1", TYPE_HINT, 6)]),
    ({"STORES": ["memory://"]}, [E("FRESHCACHE['STORES'] must map store names to URL strings, "
                                   "not ['memory://']", TYPE_HINT, 6)]),
    ({"KEY_PREFIX": "{site}"}, [E("FRESHCACHE['KEY_PREFIX'] must be a non-empty string without "
                                  "braces, not the string '{site}'", TYPE_HINT, 6)]),
    ({"DJANGO_CACHES": {"defualt": "shared", "default": "Shared"}}, [
        E("FRESHCACHE['DJANGO_CACHES'] has 'defualt', which is not an alias of CACHES (default) "
          "(did you mean 'default'?)", CACHE_HINT, 21),
        E("FRESHCACHE['DJANGO_CACHES'] maps 'default' to the string 'Shared': write 'shared' or "
          "'local'", CACHE_HINT, 21),
    ]),
    ({"DJANGO_CACHES": ["default"]}, [E("FRESHCACHE['DJANGO_CACHES'] must map CACHES aliases to "
                                        "'shared' or 'local', not ['default']", CACHE_HINT, 21)]),
    ({"BROWSER_CACHE_CONTROL": 0}, [E("FRESHCACHE['BROWSER_CACHE_CONTROL'] must be a "
                                      "Cache-Control value string, or None, not 0",
                                      TYPE_HINT, 6)]),
    ({"LEASE_SECONDS": -1}, [E("FRESHCACHE['LEASE_SECONDS'] must be a number of seconds from 0 "
                               "(single flight off) to 3600, not -1", LEASE_HINT, 20)]),
    ({"LEASE_WAIT_SECONDS": "2"}, [E("FRESHCACHE['LEASE_WAIT_SECONDS'] must be a number of "
                                     "seconds from 0 (single flight off) to 3600, not the string "
                                     "'2' (write 2 without quotes)", LEASE_HINT, 20)]),
    ({"LEASE_SECONDS": 86400}, [E("FRESHCACHE['LEASE_SECONDS'] must be a number of seconds from "
                                  "0 (single flight off) to 3600, not 86400", LEASE_HINT, 20)]),
    ({"LEASE_WAIT_SECONDS": float("nan")}, [E("FRESHCACHE['LEASE_WAIT_SECONDS'] must be a number "
                                              "of seconds from 0 (single flight off) to 3600, "
                                              "not nan", LEASE_HINT, 20)]),
    ({"EDGE": {"KEYS": ["varnsh"]}}, [E("FRESHCACHE['EDGE']['KEYS'] has 'varnsh', which is not "
                                        "an edge freshcache knows (akamai, cloudflare, fastly, "
                                        "varnish) (did you mean 'varnish'?)", EDGE_HINT, 22)]),
    ({"EARLY_HITS_TRUSTED_MIDDLEWARE": "myapp.middleware.Stamp"}, [
        E("FRESHCACHE['EARLY_HITS_TRUSTED_MIDDLEWARE'] must be a list of strings, not the string "
          "'myapp.middleware.Stamp' (write ['myapp.middleware.Stamp'])", TYPE_HINT, 6)
    ]),
    ({"EDGE": ["varnish"]}, [E("FRESHCACHE['EDGE'] must be a dict such as {'KEYS': ['varnish']}, "
                               "not ['varnish']", EDGE_HINT, 22)]),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "expected"), BAD_VALUES)
def test_e006_to_e013_each_wrong_value_is_reported(
    raw: dict[str, Any], expected: list[Error]
) -> None:
    with override_settings(DEBUG=True):
        assert checks(**raw) == expected


def test_every_setting_has_a_wrong_value_in_the_table() -> None:
    assert {key for raw, _ in BAD_VALUES for key in raw} == set(DEFAULTS)


def test_every_mistake_is_reported_at_once() -> None:
    """Several mistakes, in order; the stores' errors too, but no warnings meanwhile (the
    memory store "pages" would be freshcache.W001 without DEBUG: tested below)."""
    with override_settings(DEBUG=False):
        assert checks(ENABLED="no", STORE="memory://?max_entris=5", MAX_QUERY_PARAMS=-1,
                      STORES={"pages": "memory://"}) == [
            E("FRESHCACHE['ENABLED'] must be True or False, not the string 'no' (write False "
              "without quotes)", SWITCH_HINT, 7),
            E("FRESHCACHE['MAX_QUERY_PARAMS'] must be a positive integer, not -1", COUNT_HINT, 9),
            E("Store 'default' has URL 'memory://?max_entris=5' with unknown option "
              "'max_entris' (did you mean 'max_entries'?).", "memory:// understands: "
              "max_entries, max_tags. See docs/settings.md for store URLs.", 14),
        ]  # fmt: skip


def test_e002_unknown_scheme() -> None:
    assert checks(STORE="memcached://127.0.0.1:11211") == [
        Error(
            "Store 'default' has URL 'memcached://127.0.0.1:11211' with unknown scheme "
            "'memcached'.",
            hint=(
                "Use memory://, database://, redis://, rediss://, redis+sentinel:// or "
                "redis+cluster://."
            ),
            id="freshcache.E002",
        )
    ]


def python_without_redis(tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """The command and environment of a Python that has every package this one has, but not
    the redis driver: like a project installed without the ``[redis]`` extra.

    Its site directory is made of symlinks to this environment's site-packages, leaving out
    ``redis`` and ``hiredis`` (and their metadata); the interpreter runs with ``-S``, so it
    reads no other site-packages. Nothing is patched inside the child: ``import redis`` fails
    there as it does where the package was never installed (the test asserts that first).
    """
    site_dir = tmp_path / "site-packages"
    site_dir.mkdir()
    paths = sysconfig.get_paths()
    for packages in dict.fromkeys([paths["purelib"], paths["platlib"]]):
        for entry in Path(packages).iterdir():
            name = entry.name.lower()
            if name.startswith(("redis", "hiredis")) or name.endswith(".pth"):
                continue
            if not (site_dir / entry.name).exists():
                (site_dir / entry.name).symlink_to(entry)
    repo = Path(__file__).resolve().parent.parent
    path = [tmp_path, site_dir, repo / "src", repo, repo / "example"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(map(str, path)),
        "PYTHONNOUSERSITE": "1",
        "DJANGO_SETTINGS_MODULE": "settings_without_redis",
    }
    (tmp_path / "settings_without_redis.py").write_text(
        "from tests.settings import *  # noqa: F403\n"
        "FRESHCACHE = {'STORE': 'redis://127.0.0.1:6379/15', 'LOG_DATABASE': None}\n"
    )
    return [sys.executable, "-S"], env


def test_e003_redis_not_installed(tmp_path: Path) -> None:
    """``manage.py check`` in an environment without the redis package: E003, no traceback."""
    python, env = python_without_redis(tmp_path)
    probe = subprocess.run(
        [*python, "-c", "import django, freshcache; import redis"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert probe.returncode == 1
    assert probe.stderr.strip().endswith("ModuleNotFoundError: No module named 'redis'")

    result = subprocess.run(
        [*python, "-m", "django", "check", "--tag", "freshcache"],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert (
        "ERRORS:\n"
        "?: (freshcache.E003) Store 'default' is a Redis URL but the redis package is not "
        "installed.\n"
        "\tHINT: pip install 'django-freshcache[redis]'\n\n"
    ) in result.stderr
    # The test settings keep Django's default, process-local CACHES beside a Redis store.
    assert "?: (freshcache.W005) CACHES['default'] uses LocMemCache" in result.stderr
    assert result.stderr.endswith("System check identified 2 issues (0 silenced).\n")


def test_e004_unknown_database_alias() -> None:
    assert checks(STORES={"default": "memory://", "db": "database://?alias=defalt"}) == [
        Error(
            "Store 'db' uses database alias 'defalt', which is not in DATABASES (did you mean "
            "'default'?).",
            hint="Name an alias from DATABASES: database://?alias=NAME.",
            id="freshcache.E004",
        ),
        Warning(
            "Store 'default' is memory:// with DEBUG = False.",
            hint=MEMORY_HINT,
            id="freshcache.W001",
        ),
    ]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://127.0.0.1:notaport/0", "Port could not be cast to integer value as 'notaport'"),
        ("redis://127.0.0.1:6379/0?socket_timeout=fast", "socket_timeout must be a number of "
         "seconds, not 'fast' (for example socket_timeout=0.5)"),
        ("memory://?max_entries=0", "memory store 'memory://?max_entries=0': max_entries and "
         "max_tags must be positive"),
        ("redis://:hunter2@127.0.0.1:notaport/0", "Port could not be cast to integer value as "
         "'notaport'"),
    ],
)  # fmt: skip
def test_e005_unusable_url_is_reported_not_raised(url: str, problem: str) -> None:
    shown = url.replace(":hunter2@", ":***@")  # a password is never shown
    assert checks(STORE=url) == [
        Error(
            f"Store 'default' has URL {shown!r}, which cannot be used: {problem}.",
            hint=URL_HINT,
            id="freshcache.E005",
        )
    ]


@pytest.mark.parametrize(
    ("url", "options", "known"),
    [
        # issue 9: this one raised TypeError out of manage.py check
        ("redis://127.0.0.1:6379/0?prefx=abc", {"prefx": "prefix"}, REDIS_OPTIONS),
        ("redis://127.0.0.1:6379/0?socket_connect_timeout=1&decode_responses=1",
         {"socket_connect_timeout": "connect_timeout", "decode_responses": None}, REDIS_OPTIONS),
        ("memory://?max_entries=10&max_tag=5&size=", {"max_tag": "max_tags", "size": None},
         "max_entries, max_tags"),
        ("database://?database=default", {"database": None}, "alias"),
    ],
)  # fmt: skip
def test_e014_unknown_store_option(url: str, options: dict[str, str | None], known: str) -> None:
    scheme = url.split(":")[0]
    with override_settings(DEBUG=True):
        assert checks(STORE=url) == [
            Error(
                f"Store 'default' has URL {url!r} with unknown option {option!r}"
                + (f" (did you mean {match!r}?)" if match else "") + ".",
                hint=f"{scheme}:// understands: {known}. See docs/settings.md for store URLs.",
                id="freshcache.E014",
            )
            for option, match in options.items()
        ]  # fmt: skip


def test_e014_rediss_understands_the_tls_options() -> None:
    url = "rediss://127.0.0.1:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/etc/ca.pem&prefix=x"
    messages = checks(STORE=url + "&ssl_verify=1")
    assert [m.id for m in messages] == ["freshcache.E014"]
    assert (
        messages[0].msg
        == f"Store 'default' has URL {url + '&ssl_verify=1'!r} with unknown option 'ssl_verify'."
    )


FIELDS_FORMAT_HINT = (
    "Write each entry as app_label.ModelName.field_name, e.g. 'blog.Post.view_count'."
)
EXCLUDE_FORMAT_HINT = (
    "Write each entry as app_label or app_label.ModelName, e.g. 'sessions' or 'admin.LogEntry'."
)

#: (setting, label, check number, what the message says after "but"). Issue 9: each of these
#: was "no issues", and the capture ignores such an entry.
LABELS = [
    ("VOLATILE_FIELDS", "blog.Post.veiw_count", 17,
     "blog.Post has no field 'veiw_count' (did you mean 'view_count'?)"),
    ("VOLATILE_FIELDS", "blog.Pots.view_count", 16,
     "app 'blog' has no model 'Pots' (did you mean 'Post'?)"),
    ("EXCLUDE", "sesions", 16, "no installed app is labelled 'sesions' (did you mean 'sessions'?)"),
    ("EXCLUDE", "blog.Comments", 16, "app 'blog' has no model 'Comments' (did you mean "
     "'Comment'?)"),
    ("EXCLUDE", "nothing_like_it", 16, "no installed app is labelled 'nothing_like_it'"),
    ("PREDICATE_FIELDS", "blgo.Comment.author_name", 16,
     "no installed app is labelled 'blgo' (did you mean 'blog'?)"),
    ("PREDICATE_FIELDS", "blog.Comment.autor_name", 17,
     "blog.Comment has no field 'autor_name' (did you mean 'author_name'?)"),
    ("PREDICATE_FIELDS", "blog.Post.author_id", 17,
     "labels name fields, not columns (write 'blog.Post.author')"),
    ("VOLATILE_FIELDS", "blog.Post.tags", 17, "'tags' is a relation without a column in blog_post"),
    ("VOLATILE_FIELDS", "blog.Post.comments", 17,
     "'comments' is a relation without a column in blog_post"),
    ("PREDICATE_FIELDS", "capture_app.Restaurant.city", 17, "'city' is inherited from "
     "capture_app.Place, whose table holds it (write 'capture_app.Place.city')"),
    ("VOLATILE_FIELDS", "capture_app.PizzaPlace.rating", 16, "capture_app.PizzaPlace is a proxy "
     "model: its rows are capture_app.Restaurant's (write 'capture_app.Restaurant.rating')"),
    ("EXCLUDE", "capture_app.PizzaPlace", 16, "capture_app.PizzaPlace is a proxy model: its rows "
     "are capture_app.Restaurant's (write 'capture_app.Restaurant')"),
]  # fmt: skip


@pytest.mark.parametrize(("setting", "label", "number", "why"), LABELS)
def test_e016_e017_labels_that_name_nothing(
    setting: str, label: str, number: int, why: str
) -> None:
    hint = UNKNOWN_MODEL_HINT if number == 16 else UNKNOWN_FIELD_HINT
    with override_settings(DEBUG=True):
        assert checks(**{setting: [label]}) == [
            E(f"FRESHCACHE[{setting!r}] has {label!r}, but {why}.", hint, number)
        ]


@pytest.mark.parametrize(
    ("setting", "label", "shape", "hint"),
    [
        ("VOLATILE_FIELDS", "blog.Post", "app_label.ModelName.field_name", FIELDS_FORMAT_HINT),
        ("PREDICATE_FIELDS", "blog..title", "app_label.ModelName.field_name", FIELDS_FORMAT_HINT),
        ("EXCLUDE", "blog.Post.title", "app_label or app_label.ModelName", EXCLUDE_FORMAT_HINT),
        ("EXCLUDE", "", "app_label or app_label.ModelName", EXCLUDE_FORMAT_HINT),
    ],
)
def test_e015_malformed_label(setting: str, label: str, shape: str, hint: str) -> None:
    with override_settings(DEBUG=True):
        assert checks(**{setting: [label]}) == [
            E(f"FRESHCACHE[{setting!r}] has {label!r}, which is not an {shape} label.", hint, 15)
        ]


def test_e018_predicate_field_that_cannot_be_keyed() -> None:
    with override_settings(DEBUG=True):
        assert checks(PREDICATE_FIELDS=["blog.Post.published_at", "blog.Post.view_count"]) == [
            E("FRESHCACHE['PREDICATE_FIELDS'] has 'blog.Post.published_at', which cannot be "
              "keyed: a DateTimeField, and one instant has a spelling per time zone and "
              "precision, so a read and a write could name different tags.", UNKEYABLE_HINT, 18)
        ]  # fmt: skip


class Lowercase(models.CharField):  # type: ignore[type-arg]
    """A custom field: freshcache cannot know how it prepares its values."""


def test_e018_says_why_for_each_kind_of_column() -> None:
    """Columns none of the suite's apps has, in a registry of their own (never installed)."""
    with isolate_apps("tests.testapp") as registry:

        class Priced(models.Model):
            price = models.DecimalField(max_digits=8, decimal_places=2, unique=True)
            ratio = models.FloatField()
            data = models.JSONField()
            code = Lowercase(max_length=10)
            name = models.CharField(max_length=10, db_collation="C")
            day = models.DateField()

            class Meta:
                app_label = "testapp"

        class Line(models.Model):
            priced = models.ForeignKey(Priced, models.CASCADE, to_field="price")

            class Meta:
                app_label = "testapp"

        labels = [f"testapp.Priced.{f}" for f in ("price", "ratio", "data", "code", "name", "day")]
        settings = FreshcacheSettings(predicate_fields=(*labels, "testapp.Line.priced"))
        messages = _check_labels(settings, registry)
    why = {m.msg.split("'")[3]: m.msg.split("cannot be keyed: ")[1] for m in messages}
    decimal = (
        "a DecimalField, and one decimal number has several spellings (1.5, 1.50), so a read "
        "and a write could name different tags."
    )
    assert why == {
        "testapp.Priced.price": decimal,
        "testapp.Priced.ratio": "a FloatField, and a float has several spellings and rounds "
        "(0.1 + 0.2 != 0.3), so a read and a write could name different tags.",
        "testapp.Priced.data": "a JSONField, and one JSON value has many spellings (key order, "
        "spacing), so a read and a write could name different tags.",
        "testapp.Priced.code": "Lowercase is a custom field (tests.test_checks), and freshcache "
        "cannot know that reads and writes turn its values into the same text.",
        "testapp.Priced.name": "it has db_collation='C', so values the database finds equal may "
        "differ in text.",
        "testapp.Priced.day": "a DateField, and its values have no one text form, so a read and "
        "a write could name different tags.",
        "testapp.Line.priced": f"it refers to testapp.Priced.price: {decimal}",
    }
    assert {(m.id, m.hint) for m in messages} == {("freshcache.E018", UNKEYABLE_HINT)}


def test_default_exclude_entries_are_never_reported() -> None:
    """The defaults name apps a project may not install (``migrations`` is no app at all)."""
    with override_settings(DEBUG=True):
        assert checks(EXCLUDE=[*DEFAULTS["EXCLUDE"], "auth"]) == []


def test_w001_memory_store_without_debug() -> None:
    with override_settings(DEBUG=False):
        assert checks(STORE="memory://") == [
            Warning(
                "Store 'default' is memory:// with DEBUG = False.",
                hint=MEMORY_HINT,
                id="freshcache.W001",
            )
        ]
    with override_settings(DEBUG=True):
        assert checks(STORE="memory://") == []


def test_database_store_is_clean() -> None:
    assert checks(STORE="database://") == []


LOCMEM = "django.core.cache.backends.locmem.LocMemCache"


def w005(alias: str, backend: str, store: str = "default") -> Warning:
    return Warning(
        f"CACHES[{alias!r}] uses {backend}, which each process keeps for itself, while the "
        f"freshcache store {store!r} is shared.",
        hint="Cached pages and functions that read this cache (cache.get(), e.g. in a template "
        "tag) are served but never stored: a write in another process cannot reach this "
        "process's copy. Use a shared backend in CACHES (Redis, Memcached, database), or, if its "
        "values are the same in every process, declare it: FRESHCACHE['DJANGO_CACHES'] = "
        f"{{{alias!r}: 'shared'}}.",
        id="freshcache.W005",
    )


def test_w005_a_local_django_cache_with_a_shared_store() -> None:
    caches = {
        "default": {"BACKEND": LOCMEM},
        "files": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                  "LOCATION": "/tmp/freshcache-w005"},
        "immutable": {"BACKEND": LOCMEM, "LOCATION": "immutable"},
        "noop": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
        "redis": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                  "LOCATION": "redis://127.0.0.1:6379/13"},
        "team": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                 "LOCATION": "redis://127.0.0.1:6379/13"},
    }  # fmt: skip
    with override_settings(CACHES=caches):
        assert checks(
            STORE="database://", DJANGO_CACHES={"immutable": "shared", "team": "local"}
        ) == [
            w005("default", "LocMemCache", "default"),
            w005("files", "FileBasedCache"),
            w005("team", "RedisCache"),
        ]
        # The in-process store lives in the process too: a local cache is then a dependency.
        with override_settings(DEBUG=True):
            assert checks(STORE="memory://") == []


def test_w005_names_a_shared_store_among_several() -> None:
    with override_settings(CACHES={"default": {"BACKEND": LOCMEM}}, DEBUG=True):
        assert checks(STORE="memory://", STORES={"pages": "database://"}) == [
            w005("default", "LocMemCache", "pages")
        ]


@pytest.fixture
def refused_url() -> Iterator[str]:
    yield f"redis://127.0.0.1:{free_port()}/0"


def test_w002_redis_refused_is_a_warning_in_bounded_time(refused_url: str) -> None:
    started = time.monotonic()
    messages = checks(STORE=refused_url, CONNECT_TIMEOUT=0.2, SOCKET_TIMEOUT=0.2)
    assert time.monotonic() - started < 5
    assert messages == [
        Warning(
            f"Store 'default' ({refused_url}) cannot be reached now.",
            hint=REDIS_HINT,
            id="freshcache.W002",
        )
    ]


@pytest.mark.redis
def test_w002_redis_hung_is_a_warning_in_bounded_time() -> None:
    with RedisServer() as server:
        server.pause()
        try:
            started = time.monotonic()
            messages = checks(STORE=server.url, CONNECT_TIMEOUT=0.2, SOCKET_TIMEOUT=0.2)
            assert time.monotonic() - started < 5
        finally:
            server.resume()
        assert messages == [
            Warning(
                f"Store 'default' ({server.url}) cannot be reached now.",
                hint=REDIS_HINT,
                id="freshcache.W002",
            )
        ]
        assert checks(STORE=server.url) == []  # reachable again: clean


def test_unreachable_redis_never_raises_at_import_or_first_use(refused_url: str) -> None:
    """Settings naming a dead Redis: importing and calling cached code still works."""
    with override_settings(
        FRESHCACHE={"STORE": refused_url, "CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2}
    ):
        import freshcache
        from freshcache import counters

        counters.reset()

        @freshcache.cached
        def answer() -> int:
            return 42

        assert answer() == 42
        assert freshcache.stats()["store_errors"] >= 1


# -- the invalidation log: freshcache.W003, W004, W007, I001 -----------------------------------

TRIGGERS_HINT = (
    "Writes made outside Django to these tables (psql, other services, cascades and triggers in "
    "SQL) may not be invalidated. Run `manage.py freshcache changefeed install`."
)
LOG_TABLE_HINT = (
    "Its migration is recorded as applied: the table was dropped, the migration faked, or "
    "freshcache's models are routed away from LOG_DATABASE. Until it exists, an invalidation "
    "that cannot reach a store may be lost, and writes made outside Django are not seen. To "
    "create it: `manage.py migrate freshcache 0001 --fake`, then `manage.py migrate freshcache`."
)
NO_TRIGGERS_HINT = (
    "freshcache logs the writes made through Django only. After another program writes (a "
    "database shell, a script, another service), invalidate what it changed with "
    "freshcache.invalidate() from Django. Log triggers need PostgreSQL: see "
    "docs/outside-writes.md."
)


def sql(statement: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement)


@pytest.fixture
def put_triggers_back(transactional_db: None) -> Iterator[None]:
    yield
    from freshcache.log import reset, triggers

    triggers.install()
    reset()


@pytest.mark.postgres
def test_log_checks_are_clean_once_migrated(transactional_db: None) -> None:
    """``migrate`` created the log table and installed the triggers of the test database."""
    assert checks(STORE="database://") == []


@pytest.mark.postgres
def test_w003_missing_and_outdated_triggers_are_named(put_triggers_back: None) -> None:
    sql("DROP TRIGGER freshcache_log_ins ON blog_tag")
    expected = [
        Warning(
            "Log triggers are missing or outdated on 2 tracked table(s) of database 'default': "
            "blog_comment (outdated), blog_tag (missing).",
            hint=TRIGGERS_HINT,
            id="freshcache.W003",
        )
    ]
    # blog_comment's trigger records (id, post_id); these settings key author_name too.
    settings = {"STORE": "database://", "PREDICATE_FIELDS": ["blog.Comment.author_name"]}
    assert checks(**settings) == expected
    with override_settings(FRESHCACHE=settings):
        assert check_settings(databases=["default"]) == expected
        assert check_settings(databases=[]) == []  # the database was not offered
        assert [m.id for m in run_checks(tags=["freshcache"])] == ["freshcache.W003"]


@pytest.mark.postgres
def test_w004_log_table_missing(transactional_db: None) -> None:
    sql("ALTER TABLE freshcache_log RENAME TO freshcache_log_away")
    try:
        assert checks(STORE="database://") == [
            Warning(
                "The invalidation log table freshcache_log does not exist in database 'default'.",
                hint=LOG_TABLE_HINT,
                id="freshcache.W004",
            )
        ]
    finally:
        sql("ALTER TABLE freshcache_log_away RENAME TO freshcache_log")


@pytest.mark.postgres
def test_w007_purgers_without_their_queue_table(transactional_db: None) -> None:
    purgers = {"KEYS": ["varnish"], "PURGERS": [
        {"BACKEND": "freshcache.edge.purgers.Varnish", "URLS": ["http://127.0.0.1:6081/"]}]}
    assert checks(STORE="database://", EDGE=purgers) == []
    sql("ALTER TABLE freshcache_purge RENAME TO freshcache_purge_away")
    try:
        assert checks(STORE="database://", EDGE=purgers) == [
            Warning(
                "FRESHCACHE['EDGE']['PURGERS'] is set, but the purge queue table freshcache_purge "
                "does not exist in database 'default'.",
                hint="Run `manage.py migrate freshcache`. Until the table exists, relays cannot "
                "delete applied log rows (their purges would be lost), so every process computes "
                "pages uncached.",
                id="freshcache.W007",
            )
        ]
        assert checks(STORE="database://") == []  # without purgers, no queue is needed
    finally:
        sql("ALTER TABLE freshcache_purge_away RENAME TO freshcache_purge")


@pytest.mark.postgres
def test_nothing_is_reported_before_the_log_is_migrated(put_triggers_back: None) -> None:
    """``migrate`` runs the checks before it migrates: no warning about what it will create."""
    sql("ALTER TABLE freshcache_log RENAME TO freshcache_log_away")
    sql("DELETE FROM django_migrations WHERE app = 'freshcache' AND name = '0002_log'")
    from freshcache.log import triggers

    triggers.uninstall()
    try:
        assert checks(STORE="database://") == []
    finally:
        sql("ALTER TABLE freshcache_log_away RENAME TO freshcache_log")
        sql(
            "INSERT INTO django_migrations (app, name, applied) "
            "VALUES ('freshcache', '0002_log', now())"
        )


@pytest.fixture
def sqlite_alias(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A SQLite database beside the suite's PostgreSQL one (nothing connects to it)."""
    from django.conf import settings
    from django.db import connections

    monkeypatch.setitem(
        settings.DATABASES, "lite", {**settings.DATABASES["default"],
                                     "ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    )  # fmt: skip
    yield "lite"
    with contextlib.suppress(AttributeError):
        del connections["lite"]


def test_i001_log_without_triggers(sqlite_alias: str) -> None:
    assert checks(STORE="database://", LOG_DATABASE=sqlite_alias) == [
        Info(
            "The invalidation log is in database 'lite' (sqlite), which has no log triggers: "
            "writes made outside Django are not seen.",
            hint=NO_TRIGGERS_HINT,
            id="freshcache.I001",
        )
    ]
    with override_settings(DEBUG=True):  # one process: W001's business, not this
        assert checks(STORE="memory://", LOG_DATABASE=sqlite_alias) == []
    assert checks(STORE="database://", LOG_DATABASE=None) == []  # no log


@pytest.fixture
def hung_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A database alias whose server accepts connections and never answers."""
    import socket

    from django.conf import settings

    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    monkeypatch.setitem(
        settings.DATABASES, "hung", {**settings.DATABASES["default"], "HOST": "127.0.0.1",
                                     "PORT": str(port), "NAME": "hung"}
    )  # fmt: skip
    yield "hung"
    server.close()  # the check's thread, still connecting, gives up now


@pytest.mark.postgres
def test_log_checks_skip_a_hung_database_in_bounded_time(
    hung_database: str, django_db_blocker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from freshcache import checks as module

    monkeypatch.setattr(module, "DATABASE_CHECK_SECONDS", 0.5)
    with django_db_blocker.unblock():
        started = time.monotonic()
        messages = checks(STORE="database://", LOG_DATABASE=hung_database)
        elapsed = time.monotonic() - started
    assert messages == []
    assert 0.5 <= elapsed < 2


@pytest.mark.postgres
def test_log_checks_skip_a_refused_database_quickly(
    django_db_blocker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.conf import settings

    monkeypatch.setitem(
        settings.DATABASES, "refused", {**settings.DATABASES["default"], "HOST": "127.0.0.1",
                                        "PORT": str(free_port()), "NAME": "refused"}
    )  # fmt: skip
    with django_db_blocker.unblock():
        started = time.monotonic()
        assert checks(STORE="database://", LOG_DATABASE="refused") == []
        assert time.monotonic() - started < 2


# -- freshcache.W006: a Redis memory limit its eviction policy cannot keep ----------------------

NOEVICTION_HINT = (
    "Once full, Redis answers writes with OOM errors: freshcache then stores nothing (pages are "
    "served uncached, reason 'store full') and invalidations fail, so processes read nothing "
    "from the store until memory is freed. Set maxmemory-policy volatile-lru (freshcache gives "
    "entries and tag versions a TTL) or allkeys-lru."
)
VOLATILE_HINT = (
    "volatile-* policies evict only keys with a TTL, and with TIMEOUT = None freshcache's "
    "entries and tag versions have none: once full, Redis refuses writes. Set TIMEOUT (the "
    "default is 86400 seconds) or use maxmemory-policy allkeys-lru."
)


@pytest.mark.redis
def test_w006_eviction_policy_that_cannot_bound_freshcache() -> None:
    with RedisServer("--maxmemory", "10mb", "--maxmemory-policy", "noeviction") as server:
        where = f"Store 'default' ({server.url}): Redis has maxmemory 10485760"
        assert checks(STORE=server.url) == [
            Warning(
                f"{where} and maxmemory-policy 'noeviction': it refuses writes once full.",
                hint=NOEVICTION_HINT,
                id="freshcache.W006",
            )
        ]
        server.client().config_set("maxmemory-policy", "volatile-lru")
        assert checks(STORE=server.url) == []  # TIMEOUT (a day by default) gives every key a TTL
        assert checks(STORE=server.url, TIMEOUT=None) == [
            Warning(
                f"{where} and maxmemory-policy 'volatile-lru', which cannot evict freshcache's "
                "keys: TIMEOUT is None, so they have no TTL.",
                hint=VOLATILE_HINT,
                id="freshcache.W006",
            )
        ]
        for policy in ("allkeys-lru", "allkeys-lfu", "volatile-ttl"):
            server.client().config_set("maxmemory-policy", policy)
            assert checks(STORE=server.url) == [], policy
        server.client().config_set("maxmemory-policy", "noeviction")
        server.client().config_set("maxmemory", "0")
        assert checks(STORE=server.url) == []  # no limit: nothing to evict for


@pytest.mark.redis
def test_w006_config_disabled_is_no_warning() -> None:
    """Managed Redis often renames or disables CONFIG: the check says nothing, never fails."""
    with RedisServer(
        "--maxmemory", "10mb", "--maxmemory-policy", "noeviction", "--rename-command", "CONFIG", ""
    ) as server:
        assert checks(STORE=server.url) == []


# -- freshcache.W011: a Redis user the server's ACL refuses what freshcache needs ----------------


@pytest.mark.redis
@pytest.mark.parametrize(
    ("rules", "where", "named"),
    [
        (("~*", "&*", "+@all", "-evalsha"), "0", "'evalsha'"),
        (("~*", "&*", "+@all", "-info"), "0", "'info'"),
        (("~*", "&*", "+@all", "-pttl"), "0", "'pttl'"),
        (("~*", "resetchannels", "+@all"), "0", "channel"),  # a new Redis 7 user's: none
        (("~other:*", "&*", "+@all"), "0", "key"),
        (("~*", "&*", "+@all", "-subscribe"), "0?near_cache=1mb", "'subscribe'"),
        (("~*", "&*", "+@all", "-select"), "3", "'select'"),
        (("~*", "&*", "+@all", "-client|setname"), "0?client_name=web", "'client|setname'"),
    ],
)
def test_w011_a_redis_user_refused_what_freshcache_needs(
    rules: tuple[str, ...], where: str, named: str
) -> None:
    """Redis checks a script's commands only when it calls them: such a user connects, then
    fails every script (or every bump). The check names what is refused, and changes nothing:
    no key is written, no subscriber hears anything."""
    with RedisServer() as server:
        admin = server.client()
        admin.execute_command("ACL", "SETUSER", "fc", "on", ">pw", "+multi", "+discard", *rules)
        url = server.url.replace("redis://", "redis://fc:pw@").removesuffix("/0") + f"/{where}"
        listener = admin.pubsub()
        listener.psubscribe("*")
        assert listener.get_message(timeout=1) is not None  # the subscription's confirmation
        try:
            (warning,) = checks(STORE=url, CONNECT_TIMEOUT=1, SOCKET_TIMEOUT=1)
            assert warning.id == "freshcache.W011", warning
            assert named in warning.msg and "may not run what freshcache needs" in warning.msg
            assert "docs/scaling.md" in str(warning.hint)
            assert listener.get_message(timeout=0.2) is None
            assert admin.keys("*acl-check*") == []
        finally:
            listener.close()
        # Granted what was missing, the user is clean.
        admin.execute_command("ACL", "SETUSER", "fc", "reset", "on", ">pw", "~*", "&*", "+@all")
        assert checks(STORE=url, CONNECT_TIMEOUT=1, SOCKET_TIMEOUT=1) == []
        admin.close()


@pytest.mark.redis
def test_w011_says_nothing_when_it_cannot_ask() -> None:
    """A user that may not run MULTI: nothing can be told without running commands, so the
    check says nothing rather than guess."""
    with RedisServer() as server:
        admin = server.client()
        admin.execute_command("ACL", "SETUSER", "fc", "on", ">pw", "~*", "&*", "+@all", "-multi")
        url = server.url.replace("redis://", "redis://fc:pw@")
        assert checks(STORE=url, CONNECT_TIMEOUT=1, SOCKET_TIMEOUT=1) == []
        admin.close()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("database://?near_cache=64mb", "has no invalidation channel a write can wait on"),
        ("memory://?near_cache=1mb", "lives in the process already"),
    ],
)
def test_a_near_cache_on_another_store_is_refused_with_the_reason(url: str, why: str) -> None:
    """manage.py check gives the same reason as the store at run time (a break-it review found
    it said only "unknown option")."""
    with override_settings(DEBUG=True):
        (error,) = checks(STORE=url)
    assert error.id == "freshcache.E014"
    assert error.msg.startswith(f"Store 'default' has URL {url!r}: a near cache is a Redis")
    assert why in error.msg
