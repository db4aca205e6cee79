"""ASGI entry point: ``uvicorn mysite.asgi:application`` from the example directory."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
# Under ASGI each request runs in its own context with its own database connection: keeping
# them open (CONN_MAX_AGE) leaks one per request until PostgreSQL runs out of clients.
os.environ.setdefault("BLOG_PG_CONN_MAX_AGE", "0")

application = get_asgi_application()
