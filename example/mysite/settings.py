"""Settings for the example blog: a local demo, not a production template.

Environment switches:
  DJANGO_DEBUG=0             turn DEBUG off (benchmarks)
  DJANGO_ALLOWED_HOSTS=a,b   extra host names
  DJANGO_SECRET_KEY=...      replace the demo key
  BLOG_DB=postgres           PostgreSQL at BLOG_PG_HOST (127.0.0.1:5432), user postgres,
                             database BLOG_PG_NAME (freshcache_example); default is SQLite
                             in db.sqlite3 (BLOG_SQLITE_PATH)
  BLOG_PG_CONN_MAX_AGE=60    persistent connections (asgi.py defaults it to 0)
  FRESHCACHE_STORE=...       freshcache store URL (default memory://, e.g. redis://...)
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# The fallback key is public on purpose: it protects nothing but a local demo.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "freshcache-example-demo-key-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1").lower() not in {"0", "false", "no", "off", ""}

ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"] + [
    host.strip() for host in os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(",") if host.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "freshcache",
    "blog",
]

MIDDLEWARE = [
    # Outermost, so the badge's timing covers the whole request, cache lookups included.
    "blog.middleware.RenderStatsMiddleware",
    # Records each request's cache outcome for the badge (freshcache.page_outcome(request)).
    "freshcache.middleware.OutcomeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "mysite.urls"
WSGI_APPLICATION = "mysite.wsgi.application"
ASGI_APPLICATION = "mysite.asgi.application"

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
            ],
        },
    },
]

if os.environ.get("BLOG_DB", "sqlite").lower() in {"postgres", "postgresql", "pg"}:
    _pg_host, _, _pg_port = os.environ.get("BLOG_PG_HOST", "127.0.0.1:5432").partition(":")
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("BLOG_PG_NAME", "freshcache_example"),
            "USER": os.environ.get("BLOG_PG_USER", "postgres"),
            "PASSWORD": os.environ.get("BLOG_PG_PASSWORD", ""),
            "HOST": _pg_host,
            "PORT": _pg_port or "5432",
            # Reuse connections between requests, as a real deployment would; benchmarks
            # would otherwise measure connection setup rather than caching. Not under ASGI
            # (asgi.py sets 0): there every request has its own connection, and kept-alive
            # ones pile up until PostgreSQL refuses new clients.
            "CONN_MAX_AGE": int(os.environ.get("BLOG_PG_CONN_MAX_AGE", "60")),
        },
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("BLOG_SQLITE_PATH") or BASE_DIR / "db.sqlite3",
        },
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# Server errors and freshcache's own warnings go to stderr, with DEBUG on or off.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django.request": {"handlers": ["console"], "level": "ERROR"},
        "freshcache": {"handlers": ["console"], "level": "WARNING"},
    },
}

FRESHCACHE = {
    # memory:// lives in one process; use redis://… or database:// for several workers.
    "STORE": os.environ.get("FRESHCACHE_STORE") or "memory://",
    # X-Freshcache: hit | miss | bypass; reason=… on every response.
    "HEADER": True,
    # The post page bumps view_count on every GET: that UPDATE must not invalidate anything.
    "VOLATILE_FIELDS": ["blog.Post.view_count"],
}
