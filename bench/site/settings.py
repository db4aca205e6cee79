"""The example blog, configured for one benchmark variant (env ``BENCH_VARIANT``).

Variants:
  nocache      freshcache disabled (``ENABLED: False``): every request renders everything
  django       Django's ``cache_page`` on Redis around the blog views, freshcache disabled
  fc-memory    freshcache ``cache_page`` around the blog views, in-process store
  fc-database  ... database store (the blog's PostgreSQL)
  fc-redis     ... Redis store
  fc-near      ... Redis store with a near cache in front (``near_cache=64mb``)
  fc-early     ... fc-near with ``EarlyHitMiddleware`` first in ``MIDDLEWARE`` (early hits)
  fc-redis-early ... fc-redis with ``EarlyHitMiddleware`` first (early hits, no near cache)

The blog runs on PostgreSQL database ``BENCH_PG_NAME`` (default ``freshcache_bench``). Redis
databases ``BENCH_REDIS_DB`` (freshcache) and the next one (Django's cache) belong to the bench.
``BENCH_FRESHCACHE``, a JSON object, overrides ``FRESHCACHE`` keys (the relay benchmarks point a
process at a throwaway Redis, or turn its relay off; bench/scaled.py at Redis behind Sentinel).
``BENCH_PG_REPLICA`` (host:port) adds a read replica and a router that reads from it.
``BENCH_BADGE=1`` keeps the example's cache badge (see below).
"""

import json
import os

from mysite.settings import *  # noqa: F403
from mysite.settings import DATABASES, MIDDLEWARE

VARIANT = os.environ.get("BENCH_VARIANT", "nocache")
VARIANTS = (
    "nocache", "django", "fc-memory", "fc-database", "fc-redis", "fc-near", "fc-early",
    "fc-redis-early",
)
if VARIANT not in VARIANTS:
    raise RuntimeError(f"BENCH_VARIANT must be one of {VARIANTS}, not {VARIANT!r}")

REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379")
REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "12"))
PG_HOST, _, PG_PORT = os.environ.get("BENCH_PG_HOST", "127.0.0.1:5432").partition(":")

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "bench.site.urls"

DATABASES = {
    **DATABASES,
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("BENCH_PG_NAME", "freshcache_bench"),
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": PG_HOST,
        "PORT": PG_PORT or "5432",
        # Under ASGI (bench/site/asgi.py) connections come from a pool instead (see there).
        "CONN_MAX_AGE": 0 if os.environ.get("BENCH_PG_POOL") == "1" else 600,
    },
}
if os.environ.get("BENCH_PG_POOL") == "1":
    # 1 to 4 connections per worker: with psycopg-pool's default (4 kept open) the six uvicorn
    # servers held 48 of PostgreSQL's 100 connections idle, and the gunicorn servers that
    # connect later were refused ("too many clients": the errors of the badge's floor).
    DATABASES["default"]["OPTIONS"] = {"pool": {"min_size": 1, "max_size": 4}}

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "bench": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": f"{REDIS}/{REDIS_DB + 1}",
        "KEY_PREFIX": "djbench",
    },
}

STORE_URLS = {
    "fc-memory": "memory://?max_entries=100000",
    "fc-database": "database://",
    "fc-redis": f"{REDIS}/{REDIS_DB}",
    "fc-near": f"{REDIS}/{REDIS_DB}?near_cache=64mb",
    "fc-early": f"{REDIS}/{REDIS_DB}?near_cache=64mb",
    "fc-redis-early": f"{REDIS}/{REDIS_DB}",
}

FRESHCACHE = {
    "ENABLED": VARIANT.startswith("fc-"),
    "STORE": STORE_URLS.get(VARIANT, "memory://"),
    # Redis pub/sub ignores the database number: a prefix of its own per BENCH_REDIS_DB keeps
    # two bench runs on one server from receiving each other's near-cache invalidations.
    "KEY_PREFIX": f"fcbench{REDIS_DB}",
    # The post page counts its own views on every GET; that column is shown nowhere cached.
    "VOLATILE_FIELDS": ["blog.Post.view_count"],
    # X-Freshcache: hit/miss/bypass, so the freshness checker can count hits (off for speed).
    "HEADER": os.environ.get("BENCH_HEADER") == "1",
    **json.loads(os.environ.get("BENCH_FRESHCACHE") or "{}"),
}

# bench/scaled.py: reads from a streaming standby of the bench database (``BENCH_PG_REPLICA``,
# host:port), through a router, as docs/scaling.md configures them.
if os.environ.get("BENCH_PG_REPLICA"):
    _host, _, _port = os.environ["BENCH_PG_REPLICA"].partition(":")
    DATABASES["replica"] = {
        **DATABASES["default"], "HOST": _host, "PORT": _port, "TEST": {"MIRROR": "default"},
    }
    DATABASE_ROUTERS = ["bench.site.routers.ReadReplicaRouter"]
    FRESHCACHE.setdefault("READ_REPLICAS", {"replica": "default"})

#: The example's cache badge (``blog.middleware.RenderStatsMiddleware``, fed by freshcache's
#: ``OutcomeMiddleware``) renders a template into every page, listing a cached page's tags
#: (29 on a front page): the demo's own per-request work, which grows with what the cache reports
#: and which the constant pages of the floor do not do. A site does not show it to visitors; off
#: in the benchmarks unless ``BENCH_BADGE=1`` (bench/throughput.py measures its cost apart).
BADGE = ("blog.middleware.RenderStatsMiddleware", "freshcache.middleware.OutcomeMiddleware")
if os.environ.get("BENCH_BADGE") != "1":
    MIDDLEWARE = [m for m in MIDDLEWARE if m not in BADGE]

if VARIANT in ("fc-near", "fc-early") and FRESHCACHE["HEADER"]:
    # Tells a hit served from the near cache from one served by Redis (bench/freshness.py).
    MIDDLEWARE = ["bench.site.near_probe.NearHitsMiddleware", *MIDDLEWARE]
    if VARIANT == "fc-early":  # below the early hits, which it does not see: it adds a header
        FRESHCACHE["EARLY_HITS_TRUSTED_MIDDLEWARE"] = ["bench.site.near_probe.NearHitsMiddleware"]

if VARIANT in ("fc-early", "fc-redis-early"):
    MIDDLEWARE = ["freshcache.middleware.EarlyHitMiddleware", *MIDDLEWARE]

SILENCED_SYSTEM_CHECKS = ["freshcache.W001"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
