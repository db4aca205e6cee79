"""The staff-only dashboard in the admin (docs/observability.md, "Dashboard").

With ``django.contrib.admin`` installed, freshcache registers one admin page, **Cache
dashboard** (``/admin/freshcache/journalcounter/``), shown to superusers and to staff with the
``freshcache.view_journalcounter`` permission. It reads the journal (``freshcache.journal``):
the live hit ratio, the busiest pages, the most invalidated tags, the recent invalidations, the
slowest misses and what was never stored and why. The page polls ``data/`` every
:data:`~freshcache.dashboard.views.POLL_SECONDS` and redraws itself without a reload.
"""
