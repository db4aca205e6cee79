"""ASGI entry point for the bench: ``uvicorn bench.site.asgi:application`` (``bench/common.py``)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.site.settings")
# Under ASGI each request runs its sync code in a thread of its own, with a database connection
# of its own: kept open (CONN_MAX_AGE) they leak one per request until PostgreSQL runs out of
# clients (Django ticket #33497), and without persistent connections every request that queries
# opens one (PostgreSQL forks a backend for each). Django's pool (5.1+, psycopg_pool) lends
# each request an open connection and takes it back at the end.
os.environ.setdefault("BENCH_PG_POOL", "1")

application = get_asgi_application()
