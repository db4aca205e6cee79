"""Settings for the Django-cache e2e test: the example blog, plus two views of
``cache_site_urls``, with the ``CACHES`` backend named by ``E2E_DJANGO_CACHE`` (a Redis URL, or
empty for Django's default, a ``LocMemCache`` in each worker)."""

import os

from mysite.settings import *  # noqa: F403

ROOT_URLCONF = "tests.e2e.cache_site_urls"

if os.environ.get("E2E_DJANGO_CACHE"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["E2E_DJANGO_CACHE"],
            "KEY_PREFIX": os.environ.get("E2E_DJANGO_CACHE_PREFIX", ""),
        }
    }
