"""WSGI entry point for the bench: ``gunicorn bench.site.wsgi`` (see ``bench/run.py``)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.site.settings")

application = get_wsgi_application()
