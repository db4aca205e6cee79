"""Render published pages again after a write deleted them (``EDGE["PUBLISH"]["RERENDER"]``).

A deletion is what keeps nginx from serving an old page; the page itself is then rendered by the
next request that reaches Django. With ``RERENDER``, freshcache asks for it at once instead, in
the background, so that the next visitor gets a file again:

* on Django 6 with ``TASKS`` whose default backend queues work (not the immediate backend, which
  would render inside the writer's request), as the task ``freshcache.edge.tasks.rerender``;
* elsewhere, in a daemon thread of the process that deleted the files (one per process; paths
  already waiting are not queued twice).

Each path is requested through the project in-process (``prerender.py``), after the write's
commit and bump: what is written is built from the new data. A failure is logged; the next
request renders the page as it would have anyway.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable

__all__ = ["page_of", "schedule"]

logger = logging.getLogger("freshcache")

_lock = threading.Lock()
_waiting: set[tuple[str, str, str]] = set()
_queue: queue.Queue[tuple[str, str, str]] = queue.Queue()
_thread: threading.Thread | None = None


def page_of(relative: str) -> tuple[str, str, str]:
    """``(scheme, host, path)`` of a published file (``http/example.com/post/7/index.html`` →
    ``("http", "example.com", "/post/7/")``)."""
    from .publish import INDEX

    scheme, host, rest = relative.split("/", 2)
    return scheme, host, "/" + rest[: -len(INDEX)]


def schedule(relatives: Iterable[str]) -> None:
    """Render the pages of these deleted files again in the background, if ``RERENDER``."""
    from ..conf import get_settings

    publishing = get_settings().edge.publish
    pages = sorted({page_of(relative) for relative in relatives if relative.count("/") >= 2})
    if publishing is None or not publishing.rerender or not pages:
        return
    if _queued_as_task(pages):
        return
    global _thread
    with _lock:
        for page in pages:
            if page not in _waiting:
                _waiting.add(page)
                _queue.put(page)
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_run, name="freshcache-rerender", daemon=True)
            _thread.start()


def _queued_as_task(pages: list[tuple[str, str, str]]) -> bool:
    try:
        from django.tasks import default_task_backend  # Django 6.0+
        from django.tasks.backends.immediate import ImmediateBackend
    except ImportError:
        return False
    if isinstance(default_task_backend, ImmediateBackend):
        return False  # it would render inside the writer's request
    try:
        from .tasks import rerender

        for scheme, host, path in pages:
            rerender.enqueue([path], host, scheme == "https")
        return True
    except Exception:
        logger.exception("freshcache: could not queue the re-render task; using a thread")
        return False


def _run() -> None:
    from django.db import connections

    from .prerender import prerender

    while True:
        page = _queue.get()
        with _lock:
            _waiting.discard(page)
        scheme, host, path = page
        try:
            prerender([path], host, secure=scheme == "https")
        except Exception:
            logger.exception("freshcache: could not render %s again", path)
        finally:
            connections.close_all()
