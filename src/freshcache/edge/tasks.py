"""Django 6 tasks of freshcache (imported only when ``TASKS`` queues work; ``rerender.py``)."""

from __future__ import annotations

from django.tasks import task

from .prerender import prerender

__all__ = ["rerender"]


@task
def rerender(paths: list[str], host: str, secure: bool = False) -> int:
    """Request each path on ``host`` (over HTTPS if ``secure``) so that its page is published
    again; return how many were written."""
    rendered = prerender(paths, host, secure=secure)
    return sum(page.result == "published" for page in rendered)
