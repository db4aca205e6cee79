"""The freshcache panel: every cached computation of the request and the reads behind it.

For one request: the page, each ``{% cachefresh %}`` fragment and each ``@cached`` function or
value, with its outcome (hit, miss or bypass), why it was not stored or not looked up, whether
it was stored, its tags, its store key, and the database reads made while it computed with the
tags each of them added. Invalidations this request made (its writes) are listed too.

Recording happens only while the panel is enabled for a request: ``outcome.collecting`` for the
outcome events and ``capture.trace.tracing_reads`` for the reads (both are off, costing one
attribute read per cached computation or read, otherwise). Stats are plain JSON-able values:
the toolbar keeps them in its store and renders them later (``render_panel``).
"""

from __future__ import annotations

from typing import Any

from debug_toolbar.panels import Panel

from ... import events
from ...capture import trace
from ...outcome import collecting

__all__ = ["FreshcachePanel"]


def _computation(event: events.Event, reads: list[trace.Read]) -> dict[str, Any]:
    return {
        "kind": event.kind,
        "name": event.name,
        "outcome": event.outcome,
        "stored": event.stored,
        "reason": event.reason,
        "ms": None if event.seconds is None else round(event.seconds * 1000, 2),
        "tags": sorted(event.tags),
        "key": event.key,
        "reads": [{"sql": r.sql, "tags": sorted(r.tags)} for r in reads if r.key == event.key],
    }


class FreshcachePanel(Panel):
    """Cached pages, fragments and functions of this request: hit or miss, why, what was stored,
    and the tags each SQL query added."""

    title = "freshcache"
    template = "freshcache/debug_toolbar/panel.html"
    # A plain process_request wrapper: the toolbar turns the panel off under ASGI.
    is_async = False

    def process_request(self, request: Any) -> Any:
        with collecting(request) as reported, trace.tracing_reads() as reads:
            response = super().process_request(request)
        found = [e for e in reported if isinstance(e, events.Event)]
        bumps = [e for e in reported if isinstance(e, events.Invalidation)]
        keys = {event.key for event in found}
        self.record_stats(
            {
                "computations": [_computation(event, reads) for event in found],
                "other_reads": [
                    {"sql": r.sql, "tags": sorted(r.tags), "key": r.key}
                    for r in reads
                    if r.key not in keys
                ],
                "invalidations": [
                    {"tags": sorted(b.tags), "source": b.source, "failed": b.failed}
                    for b in bumps
                ],
            }
        )
        return response

    @property
    def nav_subtitle(self) -> str:
        computations = self.get_stats().get("computations", [])
        pages = [c for c in computations if c["kind"] == "page"]
        inner = len(computations) - len(pages)
        head = f"page {pages[-1]['outcome']}" if pages else "no cached page"
        hits = sum(1 for c in computations if c["outcome"] == "hit" and c["kind"] != "page")
        return head + (f"; inside: {hits} of {inner} hit" if inner else "")
