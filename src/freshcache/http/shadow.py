"""Shadow mode: re-render a sample of page hits after their response was sent, and compare.

A missed dependency (a value read from somewhere capture does not see: a module global, a file,
a connection opened outside Django) shows up as a hit that differs from what the view renders
now. With ``FRESHCACHE["SHADOW"] = {"RATE": r}``, each GET page hit is sampled with
probability ``r``:

1. **Sampling** (``serve``): one read of :data:`rate` per hit while off; one random draw per hit
   while on. A sampled hit whose path no ``EXCLUDE`` pattern matches becomes a :class:`Job`,
   attached to the response's closers: it is queued when the server closes the response, after
   the last byte was sent (PEP 3333's ``close()``; Django's ASGI handler and test client close
   responses too). The visitor never waits for it.
2. **Queue**: one background thread per process runs the jobs, from a bounded queue; a job
   that finds it full is dropped (counted as ``dropped``).
3. **Re-render**: the view runs again with the same request, under the same guard as a miss,
   with every cached computation inside bypassing the store (``scope.uncached``: no lookup,
   nothing stored). Its response becomes a page as a miss's would, per-request text cut out
   into slots (CSRF tokens, CSP nonces, placeholders); it is never stored nor sent anywhere. An
   exception is logged and counted (``error``), never raised.
4. **Comparison**: status and body, slots compared by name, not by content.
5. **Revalidation** of a difference: the entry is looked up again. If it is no longer the page
   that was served, a tag was bumped since the hit's lookup (a legitimate write): the difference
   is expected, so nothing is reported (``skipped``). Otherwise it is logged at WARNING on
   the ``freshcache`` logger (URL, page name, tags, a bounded unified diff), counted
   (``freshcache.stats()["shadow_mismatches"]``, the Prometheus metrics) and sent as
   ``freshcache.signals.shadow_mismatch``.

The view runs twice for a sampled hit: a view with side effects (a counter it increments) does
them again. Exclude it with ``EXCLUDE`` or :func:`shadow_exempt`. A write that commits before
the re-render reads but whose bump reaches the store only after the revalidation is reported
(the window is the writer's commit-to-bump time).
"""

from __future__ import annotations

import difflib
import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar

from asgiref.sync import async_to_sync, sync_to_async
from django.db import connections
from django.http import HttpRequest, HttpResponseBase
from django.template.response import SimpleTemplateResponse
from django.urls import Resolver404, resolve
from django.utils import timezone, translation

from .. import core, counters, hooks, metrics, signals
from ..conf import get_settings
from ..scope import open_scope, uncached
from ..stores import Hit
from . import carry
from .guard import guarded
from .names import view_name
from .page import PAGE_CODEC, Page, page_from_response

if TYPE_CHECKING:
    from .serve import _Plan

__all__ = ["Job", "rate", "schedule", "shadow_exempt", "sync", "wait"]

logger = logging.getLogger("freshcache")

#: The sample rate in force (``FRESHCACHE["SHADOW"]["RATE"]``; kept in step by :func:`sync`).
#: ``serve`` reads it on every hit: 0.0 while shadow mode is off.
rate = 0.0

#: The bypass reason of the cached computations inside a shadow render.
REASON = "shadow render"
#: A diff summary shows this many lines at most, each cut to this many characters.
DIFF_LINES = 24
DIFF_WIDTH = 160
#: The log line names this many tags at most.
TAGS_SHOWN = 20

_MARK = "_freshcache_shadow_exempt"
CODEC = PAGE_CODEC
V = TypeVar("V", bound=Callable[..., Any])


def shadow_exempt(view: V) -> V:
    """Never re-render this view in shadow mode (it has side effects, or per-request text).

    Works on function views and on what ``View.as_view()`` returns, above or below
    ``cache_page``: ``functools.wraps`` copies the mark.
    """
    setattr(view, _MARK, True)
    return view


def _exempt(request: HttpRequest) -> bool:
    match = getattr(request, "resolver_match", None)
    if match is None:
        try:
            match = resolve(request.path_info, getattr(request, "urlconf", None))
        except Resolver404:  # a page for no pattern (a cached 404): no view to exempt
            return False
    func: Any = match.func
    for _ in range(16):  # a decorator that kept __wrapped__ but not __dict__
        if func is None:
            return False
        if getattr(func, _MARK, False):
            return True
        func = getattr(func, "__wrapped__", None)
    return False


@dataclass
class Job:
    """One sampled hit to render again (see the module docstring)."""

    request: HttpRequest
    render: Callable[[], Any]
    is_async: bool
    plan: _Plan
    vary: tuple[str, ...]
    key: str
    page: Page
    tags: frozenset[str]
    #: What the re-render read that the cached page does not record (filled by :meth:`run`).
    unrecorded: frozenset[str] = field(default=frozenset())
    #: The language and time zone the hit was served in (activated by middleware above the
    #: cache for this request only): the re-render runs in them, in another thread.
    language: str | None = None
    zone: Any = None

    def enqueue(self) -> None:
        """Queue this job (the response's closer: the response was sent)."""
        _worker().put(self)

    def run(self) -> str:
        """Render again, compare, revalidate a difference; return the result (``match``,
        ``mismatch``, ``skipped``, ``error``, or ``exempt``: not rendered, not counted)."""
        name = view_name(self.request)
        if not rate:
            return "exempt"  # shadow mode was turned off since this hit was sampled
        try:
            if _exempt(self.request):
                return "exempt"
            hooks.run("before_shadow_render", request=self.request)
            status, fresh = self._render()
            if status >= 500:
                raise RuntimeError(f"the shadow render answered a {status}")
        except Exception as exc:
            logger.warning(
                "freshcache: the shadow render of %s raised; ignored (the visitor was served "
                "the cached page)", self.url(), exc_info=exc,
            )  # fmt: skip
            return self._count("error", name)
        if isinstance(fresh, str) and status == self.page.status:
            logger.info(
                "freshcache: the shadow render of %s cannot be compared: %s", self.url(), fresh
            )
            return self._count("skipped", name)
        old, new = _text(self.page), (b"" if isinstance(fresh, str) else _text(fresh))
        if status == self.page.status and old == new:
            return self._count("match", name)
        # Looked up after the render: still the page served means no tag was bumped between
        # the hit's lookup and the render's reads, so the difference is not a legitimate write.
        if not self._still_cached():
            return self._count("skipped", name)
        diff = summary(old, new, self.page.status, status)
        extra = ""
        if self.unrecorded:
            extra = f"; it read tags the cached page does not record: {_tags(self.unrecorded)}"
        logger.warning(
            "freshcache: shadow render of %s differs from the cached page served (page %s, "
            "tags: %s)%s. A dependency freshcache does not see?\n%s",
            self.url(), name, _tags(self.tags), extra, diff,
        )  # fmt: skip
        signals.shadow_mismatch.emit(
            "page", kind="page", name=name, url=self.url(), tags=self.tags,
            unrecorded=self.unrecorded, diff=diff,
        )  # fmt: skip
        return self._count("mismatch", name)

    def url(self) -> str:
        scheme = "https" if self.request.is_secure() else "http"
        return f"{scheme}://{self.plan.host}{self.request.get_full_path()}"

    def _count(self, result: str, name: str) -> str:
        counters.incr("shadow_errors" if result == "error" else f"shadow_{_PLURAL[result]}")
        metrics.note_shadow(result, "page", name)
        return result

    def _render(self) -> tuple[int, Page | str]:
        """The page as a miss would store it now (or why it would not be), and its status."""
        request, plan = self.request, self.plan
        with (
            translation.override(self.language),
            timezone.override(self.zone),
            uncached(REASON),
            open_scope(self.key) as scope,
        ):
            guard = plan.guard(self.vary, False)
            before = carry.snapshot(request)
            try:
                with guarded(request, guard):
                    response = async_to_sync(self._arender)() if self.is_async else self.render()
                    if _unrendered(response):
                        response = response.render()
            finally:
                guard.effects = carry.effects_since(request, before)
        self.unrecorded = frozenset(scope.tags - self.tags)
        return response.status_code, page_from_response(request, response, guard, plan.statuses())

    async def _arender(self) -> HttpResponseBase:
        response = await self.render()
        if _unrendered(response):
            response = await sync_to_async(response.render)()
        return response

    def _still_cached(self) -> bool:
        """Whether the entry is still the page that was served (no tag bumped since)."""
        plan = core._Plan(self.key, self.plan.options.store, CODEC, None)
        found = plan.lookup()
        if not isinstance(found, Hit):
            return False
        ok, current = plan.decode(found)
        return ok and isinstance(current, Page) and current.digest == self.page.digest


_PLURAL = {"match": "matches", "mismatch": "mismatches", "skipped": "skipped",
           "dropped": "dropped"}  # fmt: skip


def _unrendered(response: HttpResponseBase) -> TypeGuard[SimpleTemplateResponse]:
    return isinstance(response, SimpleTemplateResponse) and not response.is_rendered


def _text(page: Page) -> bytes:
    """The page's body with each slot shown by name: what two renders share."""
    out, pos = [], 0
    for offset, name in page.slots:
        out += [page.body[pos:offset], b"{{" + name.encode() + b"}}"]
        pos = offset
    out.append(page.body[pos:])
    return b"".join(out)


def _tags(tags: frozenset[str]) -> str:
    shown = sorted(tags)
    more = f" and {len(shown) - TAGS_SHOWN} more" if len(shown) > TAGS_SHOWN else ""
    return ", ".join(shown[:TAGS_SHOWN]) + more if shown else "none"


def summary(old: bytes, new: bytes, old_status: int = 200, new_status: int = 200) -> str:
    """A unified diff of two bodies, bounded to :data:`DIFF_LINES` lines of
    :data:`DIFF_WIDTH` characters; a long changed line is shown from just before its first
    difference with the line it replaced."""
    a = old.decode("utf-8", "replace").splitlines()
    b = new.decode("utf-8", "replace").splitlines()
    lines = [f"status {old_status} -> {new_status}"] if old_status != new_status else []
    diff = list(difflib.unified_diff(a, b, "cached", "fresh", n=1, lineterm=""))
    removed: list[str] = []
    added = 0
    for line in diff:
        start = 0
        if line.startswith("-") and not line.startswith("---"):
            removed.append(line[1:])
        elif line.startswith("+") and not line.startswith("+++"):
            if added < len(removed):
                start = _common_prefix(removed[added], line[1:])
            added += 1
        else:
            removed, added = [], 0
        lines.append(_clip(line, start))
    if len(lines) > DIFF_LINES:
        lines = [*lines[:DIFF_LINES], f"... ({len(lines) - DIFF_LINES} more lines)"]
    return "\n".join(lines)


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _clip(line: str, start: int) -> str:
    if len(line) <= DIFF_WIDTH:
        return line
    begin = max(0, start + 1 - DIFF_WIDTH // 3)
    if begin == 0:
        return line[: DIFF_WIDTH - 3] + "..."
    return line[0] + "..." + line[begin + 1 : begin + DIFF_WIDTH - 6] + "..."


def schedule(
    request: HttpRequest,
    render: Callable[[], Any],
    plan: _Plan,
    vary: tuple[str, ...],
    outcome: core.Outcome[Any],
    response: HttpResponseBase,
    is_async: bool = False,
) -> None:
    """A sampled hit: render it again once ``response`` is closed (sent). Never raises."""
    try:
        if request.method != "GET":
            return  # a HEAD render may omit the body: nothing to compare
        if get_settings().shadow.excludes(request.path):
            return
        assert isinstance(outcome.value, Page)
        job = Job(request, render, is_async, plan, vary, plan.key(vary), outcome.value,
                  outcome.tags, language=translation.get_language(),
                  zone=timezone.get_current_timezone())  # fmt: skip
        # HttpResponseBase.close() calls these, then sends request_finished: after the last
        # byte (PEP 3333; Django's ASGIHandler and test Client close responses the same way).
        response._resource_closers.append(job.enqueue)  # type: ignore[attr-defined]
    except Exception:
        logger.exception("freshcache: could not schedule a shadow render")


class _Worker:
    """The background thread of this process and its bounded queue."""

    def __init__(self, size: int) -> None:
        self.pid = os.getpid()
        self.queue: queue.Queue[Job] = queue.Queue(size)
        self.thread = threading.Thread(target=self.loop, name="freshcache-shadow", daemon=True)
        self.thread.start()

    def put(self, job: Job) -> None:
        try:
            self.queue.put_nowait(job)
        except queue.Full:
            counters.incr("shadow_dropped")
            metrics.note_shadow("dropped", "page", "")

    def loop(self) -> None:
        while True:
            job = self.queue.get()
            try:
                job.run()
            except Exception:  # a bug here must not stop the thread
                logger.exception("freshcache: a shadow render failed")
            finally:
                # This thread's connections: a request's would be closed by request_finished.
                connections.close_all()
                self.queue.task_done()


_lock = threading.Lock()
_current: _Worker | None = None


def _worker() -> _Worker:
    global _current
    current = _current
    if current is None or current.pid != os.getpid():  # none yet, or forked: threads are not
        with _lock:
            current = _current
            if current is None or current.pid != os.getpid():
                current = _current = _Worker(get_settings().shadow.queue_size)
    return current


def sync() -> None:
    """Follow ``FRESHCACHE["SHADOW"]`` (``apps.ready`` and whenever ``FRESHCACHE`` changes)."""
    global rate
    settings = get_settings()
    rate = settings.shadow.rate if settings.enabled else 0.0
    if _current is not None:
        _current.queue.maxsize = settings.shadow.queue_size


def wait(timeout: float = 30.0) -> bool:
    """Wait until every queued shadow render is done (tests); ``False`` after ``timeout``."""
    current = _current
    if current is None:
        return True
    done = current.queue.all_tasks_done
    with done:
        return done.wait_for(lambda: not current.queue.unfinished_tasks, timeout)
