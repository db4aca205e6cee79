"""Prometheus metrics (``FRESHCACHE["METRICS"] = True`` and ``pip install
'django-freshcache[prometheus]'``), exposed by :func:`freshcache.metrics.views.metrics`.

The metrics, in Prometheus conventions (base units, ``_total`` counters; docs/observability.md
shows a scrape):

* ``freshcache_hits_total{kind,name}``: cached computations served from a store;
* ``freshcache_misses_total{kind,name,stored}``: computed against a snapshot; ``stored`` is
  ``"true"`` or ``"false"``;
* ``freshcache_bypasses_total{kind,reason}``: computed without the store (``reason`` cut at its
  first ``:``);
* ``freshcache_compute_seconds{kind}``: histogram of how long misses and bypasses computed;
* ``freshcache_invalidations_total{source}``: bumps this process made (``write``,
  ``invalidate``, ``cache``, ``relay``: log rows its relay bumped), and
  ``freshcache_tags_bumped_total``: the tags in them;
* ``freshcache_store_seconds{store,op}``: histogram of store calls (``lookup``, ``set``,
  ``bump``, ``apply``);
* ``freshcache_relay_lag_seconds``: age of the oldest log row at the relay's last drain;
* ``freshcache_near_cache_bytes{store}``: bytes a store's near cache holds in this process;
* ``freshcache_shadow_renders_total{result}``: shadow mode's re-renders of sampled hits
  (``match``, ``mismatch``, ``skipped``, ``dropped``, ``error``), and
  ``freshcache_shadow_mismatches_total{kind,name}``: the mismatches, per page.

``kind`` is page, fragment, function or value; ``name`` the view (URL name or dotted path), the
fragment, the function, or a direct fetch's key up to its first ``:``: bounded, never a key.

Metrics are registered with ``prometheus_client``'s default registry, once per process, on the
first use with ``METRICS`` on; they are fed by outcome events (``freshcache.events``) and by
timing each store call (``stores.py``). With ``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn and other
multi-process servers), every process writes its values there and the view aggregates them.
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from .. import events
from ..conf import get_settings

__all__ = [
    "MISSING",
    "Metrics",
    "get_metrics",
    "note_relay_lag",
    "note_shadow",
    "prometheus",
    "sync",
]

#: Why the metrics cannot work: the message of the error raised and of ``manage.py check``.
MISSING = (
    "FRESHCACHE['METRICS'] is on but prometheus_client is not installed: "
    "pip install 'django-freshcache[prometheus]'"
)

#: Store call latency buckets, seconds: a near-cache hit (µs) up to a slow network (1 s).
STORE_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0
)  # fmt: skip
#: Computation buckets, seconds: a fragment (ms) up to a slow page (10 s).
COMPUTE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Distinct bypass reasons labelled per process; further ones are counted as ``other``.
MAX_REASONS = 64
#: A bypass reason is cut at its first ``:`` and to this length (some carry a value).
REASON_LENGTH = 60


def prometheus() -> Any:
    """The ``prometheus_client`` module; ``ImproperlyConfigured`` naming the extra if missing."""
    try:
        import prometheus_client
    except ImportError as exc:
        raise ImproperlyConfigured(MISSING) from exc
    return prometheus_client


class Metrics:
    """The metric objects of this process (one instance: :func:`get_metrics`)."""

    def __init__(self) -> None:
        p = prometheus()
        self.reasons: set[str] = set()
        self.hits = p.Counter(
            "freshcache_hits", "Cached computations served from a store.", ["kind", "name"]
        )
        self.misses = p.Counter(
            "freshcache_misses",
            "Cached computations computed against a snapshot, stored or not.",
            ["kind", "name", "stored"],
        )
        self.bypasses = p.Counter(
            "freshcache_bypasses",
            "Cached computations computed without using the store, by reason.",
            ["kind", "reason"],
        )
        self.compute = p.Histogram(
            "freshcache_compute_seconds",
            "Wall-clock seconds a miss or bypass took to compute.",
            ["kind"],
            buckets=COMPUTE_BUCKETS,
        )
        self.invalidations = p.Counter(
            "freshcache_invalidations", "Invalidations (bumps) made by this process.", ["source"]
        )
        self.tags_bumped = p.Counter("freshcache_tags_bumped", "Tags bumped by invalidations.")
        self.store_seconds = p.Histogram(
            "freshcache_store_seconds",
            "Seconds a store call took.",
            ["store", "op"],
            buckets=STORE_BUCKETS,
        )
        self.relay_lag = p.Gauge(
            "freshcache_relay_lag_seconds",
            "Age in seconds of the oldest invalidation log row at the relay's last drain.",
            multiprocess_mode="livemax",
        )
        self.near_bytes = p.Gauge(
            "freshcache_near_cache_bytes",
            "Bytes held by a store's near cache in this process.",
            ["store"],
            multiprocess_mode="livesum",
        )
        self.shadow_renders = p.Counter(
            "freshcache_shadow_renders",
            "Shadow re-renders of sampled page hits, by result.",
            ["result"],
        )
        self.shadow_mismatches = p.Counter(
            "freshcache_shadow_mismatches",
            "Shadow re-renders that differed from the cached page they re-rendered.",
            ["kind", "name"],
        )
        self._hit_children: dict[tuple[str, str], Any] = {}

    def record(self, event: events.Event | events.Invalidation) -> None:
        """Count one outcome event (subscribed to ``freshcache.events``)."""
        if isinstance(event, events.Invalidation):
            # "relay: UPDATE blog_post" counts as "relay": one label per kind, not per table.
            self.invalidations.labels(event.source.partition(":")[0]).inc()
            self.tags_bumped.inc(len(event.tags))
            return
        if event.outcome == "hit":
            # The hot path: the labelled child is looked up once per (kind, name), not per hit.
            child = self._hit_children.get((event.kind, event.name))
            if child is None:
                child = self._hit_children[(event.kind, event.name)] = self.hits.labels(
                    event.kind, event.name
                )
            child.inc()
            return
        if event.outcome == "miss":
            self.misses.labels(event.kind, event.name, "true" if event.stored else "false").inc()
        else:
            reason = (event.reason or "unknown").partition(":")[0][:REASON_LENGTH]
            if reason not in self.reasons:
                if len(self.reasons) >= MAX_REASONS:
                    reason = "other"  # a bounded number of series, whatever the reasons say
                else:
                    self.reasons.add(reason)
            self.bypasses.labels(event.kind, reason).inc()
        if event.seconds is not None:
            self.compute.labels(event.kind).observe(event.seconds)


_lock = threading.Lock()
_metrics: Metrics | None = None


def get_metrics() -> Metrics:
    """This process's metrics, registered on first use (raise ``ImproperlyConfigured`` without
    ``prometheus_client``)."""
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = Metrics()
    return _metrics


def _record(event: events.Event | events.Invalidation) -> None:
    get_metrics().record(event)


def sync() -> None:
    """Listen to outcome events exactly while ``METRICS`` is on and ``prometheus_client`` is
    installed (called by ``apps.ready`` and whenever ``FRESHCACHE`` changes)."""
    if get_settings().metrics and available():
        get_metrics()
        events.subscribe(_record)
    else:
        events.unsubscribe(_record)


def available() -> bool:
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


def note_relay_lag(seconds: float) -> None:
    """Set the relay lag gauge (called by the relay after a drain that bumped rows)."""
    if get_settings().metrics and available():
        get_metrics().relay_lag.set(seconds)


def note_shadow(result: str, kind: str, name: str) -> None:
    """Count one shadow render's ``result`` (``http/shadow.py``); a mismatch also per page."""
    if get_settings().metrics and available():
        metrics = get_metrics()
        metrics.shadow_renders.labels(result).inc()
        if result == "mismatch":
            metrics.shadow_mismatches.labels(kind, name).inc()
