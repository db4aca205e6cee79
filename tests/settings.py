"""Settings for freshcache's own test suite: real PostgreSQL and real Redis.

Service addresses come from the environment so CI and developers can point elsewhere:
FRESHCACHE_TEST_PG (a libpq-style "host:port"), FRESHCACHE_TEST_REDIS (a redis:// URL).
"""

import os
import socket

_pg_host, _, _pg_port = os.environ.get("FRESHCACHE_TEST_PG", "127.0.0.1:5432").partition(":")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


#: False on a developer machine without PostgreSQL: the suite then runs on SQLite and skips
#: every test marked ``postgres`` (CI sets CI=true and never skips: see tests/conftest.py).
POSTGRES_AVAILABLE = _reachable(_pg_host, int(_pg_port or 5432))
_TEST_DB = os.environ.setdefault("FRESHCACHE_TEST_DB", f"test_freshcache_{os.getpid()}")

SECRET_KEY = "freshcache-tests-not-a-secret"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1", "example.com", "www.example.com"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "freshcache",
        "USER": "postgres",
        "HOST": _pg_host,
        "PORT": _pg_port or "5432",
        # One test database per run (children of a run inherit it through the environment), so
        # that concurrent runs on one machine do not drop each other's database.
        "TEST": {"NAME": _TEST_DB},
    },
}
if not POSTGRES_AVAILABLE and os.environ.get("CI") != "true":
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

REDIS_URL = os.environ.get("FRESHCACHE_TEST_REDIS", "redis://127.0.0.1:6379/15")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "freshcache",
    "blog",
    "tests.testapp",
    "tests.capture_app",
    "tests.http_app",
    "tests.shapes_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "tests.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    },
]

STATIC_URL = "/static/"

FRESHCACHE = {"STORE": "memory://"}
