"""The scrape endpoint: ``path("metrics/", include("freshcache.metrics.urls"))`` or this view.

It answers 404 while ``FRESHCACHE["METRICS"]`` is off, and raises ``ImproperlyConfigured``
(naming the extra) without ``prometheus_client``. It sends ``Cache-Control: no-store, private``
(so no cache, freshcache's page cache included, stores it) and checks no permission: expose it
only where your scraper reaches it, or wrap it (``staff_member_required``, an IP allowlist).
"""

from __future__ import annotations

import os

from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache

from ..conf import get_settings
from ..stores import all_stores
from . import get_metrics, prometheus

__all__ = ["metrics"]


@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text exposition of freshcache's metrics (and of anything else registered
    with ``prometheus_client``'s default registry), aggregated over every process when
    ``PROMETHEUS_MULTIPROC_DIR`` is set."""
    if not get_settings().metrics:
        raise Http404("FRESHCACHE['METRICS'] is off")
    client = prometheus()
    get_metrics()
    for store in all_stores():  # this process's near caches, as of now
        note = getattr(store, "note_near", None)
        if note is not None:
            note()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = client.REGISTRY
    return HttpResponse(client.generate_latest(registry), content_type=client.CONTENT_TYPE_LATEST)
