"""Static publishing: cached pages written as files that nginx serves (docs/edge.md).

With ``FRESHCACHE["EDGE"]["PUBLISH"] = {"ROOT": ..., "URLS": [...]}``, a page that matches
``URLS`` and that freshcache stores is also written to ``<ROOT><path>index.html``, atomically (a
temporary file in the same directory, then ``os.replace``), so that the web server answers it
with no Python at all (``try_files $uri/index.html @django``). Only a page that is the same for
every visitor is written (:func:`refusal`).

**Deleted before the write returns.** Each file's edge keys (``edge_key`` of every tag of the
page) are indexed in ``freshcache_published`` (log database). After its bump, a writer deletes
the files indexed under the purge keys of its tags (:func:`unpublish`) before it returns; the
relay queues the same keys for the ``publish`` purger (:class:`Files`, through the purge queue),
which deletes them again if the writer could not (it died after COMMIT, its disk call failed):
never lost. Writes from outside Django reach the files through the log, the relay and the queue.

**No stale file from a render that raced a write.** The publisher (1) indexes the file, committed;
(2) looks the page's entry up again: it must still be valid and hold the file's body (a newer
render may have replaced it); (3) renames the file into place while holding its index rows (a row
lock). A writer's bump comes before its deletion, and a deletion removes the rows *before* the
file, in one transaction. So either the bump comes before (2) and nothing is published, or the
writer finds the rows of (1): it deleted them before (3) (the rename does not happen) or waits
for (3) and then deletes the file. No file is ever visible that a returned write made stale.
Each publication has its own ``token``: a deletion removes the rows of the publication it saw
only, never those of a newer one.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from django.db import connections, transaction
from django.http import HttpRequest

from ..transactions import in_transaction
from .index import CHUNK as _CHUNK
from .index import delete as _delete
from .index import execute as _execute
from .index import hold as _hold
from .index import indexed as _indexed
from .keys import edge_key, purge_keys
from .purgers.base import REQUIRED, PurgeFailed, Purger
from .rerender import schedule

if TYPE_CHECKING:
    from ..stores import Store

__all__ = [
    "Files",
    "file_for",
    "publication_for",
    "publish",
    "refusal",
    "site_of",
    "unpublish",
    "unpublish_all",
]

logger = logging.getLogger("freshcache")
T = TypeVar("T")

#: Where the page for a path is written, under the root (``/post/7/`` → ``post/7/index.html``).
INDEX = "index.html"


def _settings() -> Any:
    from ..conf import get_settings

    settings = get_settings()
    return settings.edge.publish, settings.log_database


def _own_connection(using: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` where its statements commit at once: here, or, inside an open transaction
    (``ATOMIC_REQUESTS``, a write inside ``atomic()``), on a connection of its own in a
    short-lived thread (the index must be visible to writers before a file is)."""
    if not in_transaction(connections[using]):
        return fn()
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as exc:
            failure.append(exc)
        finally:
            connections[using].close()

    thread = threading.Thread(target=run, name="freshcache-publish", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def file_for(path: str) -> str | None:
    """The file of ``request.path`` relative to the root, or ``None`` when it is not one
    freshcache writes: only paths ending in ``/``, made of plain segments (no ``.``/``..``, no
    hidden names, no backslash or NUL)."""
    if not path.startswith("/") or not path.endswith("/") or len(path) > 900:
        return None
    parts = [part for part in path[1:-1].split("/")] if path != "/" else []
    for part in parts:
        if not part or part.startswith(".") or "\\" in part or "\x00" in part:
            return None
    return "/".join([*parts, INDEX])


_HOST = re.compile(r"[a-z0-9][a-z0-9.-]{0,252}|\[[0-9a-f:.]{2,45}\]")


def site_of(scheme: str, host: str) -> str | None:
    """The directory of a site's files under the root: ``http/example.com``, as nginx's
    ``$scheme/$host`` (the host lower-cased, without its port); ``None`` for a host that could
    not be a directory name."""
    name = host.lower()
    if name.startswith("["):
        name = name[: name.find("]") + 1]
    else:
        name = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
    if scheme not in ("http", "https") or not _HOST.fullmatch(name) or ".." in name:
        return None
    return f"{scheme}/{name}"


def publication_for(request: HttpRequest) -> str | None:
    """The file of ``request`` relative to the root: ``<scheme>/<host>/<path>index.html`` (Django
    keys a page by scheme and host too: a page rendered for one host is never another's)."""
    site = site_of(request.scheme or "", request.get_host())
    relative = file_for(request.path)
    return None if site is None or relative is None else f"{site}/{relative}"


def refusal(request: HttpRequest, page: Any, options: Any, first_level: bool) -> str | None:
    """Why this stored page is not published (``None``: it is). A file is served to every
    request for its path, whatever its cookies and headers: only a page that read nothing of
    the request but its path, and adds nothing per visitor, qualifies."""
    if request.method != "GET" or request.META.get("QUERY_STRING"):
        return "a query string or a method other than GET"
    if options.vary_on_user or options.vary_on_headers or not first_level:
        return "the page varies by visitor"
    if page.status != 200 or page.slots or page.csrf_cookie or page.effects:
        return "the page has per-visitor parts (a CSRF token, a placeholder, a session)"
    for source, name in page.absent:
        # The file answers only GET and HEAD without a query string (the server block of
        # docs/edge.md): a page rendered for a GET that found a query parameter absent (or
        # read the method: ``@require_safe``, ``@require_GET``) holds for every such request,
        # as at an edge (HEAD from the GET page, as Varnish does). Anything else it found
        # absent (a cookie, a header) a file cannot check.
        if source in ("query", "rawquery") or (source, name) == ("method", "GET"):
            continue
        return f"the page is served only to requests without {source} {name!r}"
    headers = {name.lower(): value for name, value in page.headers}
    if "vary" in headers or "set-cookie" in headers:
        return "the response varies or sets a cookie"
    content_type = headers.get("content-type", "")
    if not content_type.startswith("text/html"):
        return "not HTML"
    charset = content_type.lower().partition("charset=")[2].split(";")[0].strip(" \"'")
    if charset not in ("", "utf-8", "utf8") or headers.get("content-encoding", "identity") != \
            "identity":  # fmt: skip
        # nginx sends every file as ``text/html; charset=utf-8``, without Content-Encoding.
        return "not UTF-8 text (a charset or Content-Encoding the web server would not send)"
    if file_for(request.path) is None:
        return "the path does not end in / or has hidden or dot segments"
    return _per_visitor_locale(request)


def _per_visitor_locale(request: HttpRequest) -> str | None:
    """Why the page's language or time zone may be one visitor's (``None``: they are not).
    Both are part of the page key, set by middleware outside the page's guard
    (``LocaleMiddleware`` from ``Accept-Language`` or a cookie, a time zone middleware): the
    file, served to every visitor, may only hold the path's language and the default zone."""
    from django.conf import settings
    from django.utils import timezone, translation

    if settings.USE_I18N:
        from_path = translation.get_language_from_path(request.path_info)
        if from_path is None and settings.LANGUAGE_COOKIE_NAME in request.COOKIES:
            return "the language may come from the visitor's cookie"
        if from_path is None and hasattr(request, "LANGUAGE_CODE"):
            return "the language was chosen for this visitor (LocaleMiddleware)"
        active = (translation.get_language() or "").lower()
        if active != (from_path or settings.LANGUAGE_CODE).lower():
            return "the page is in a language chosen for this visitor"
    if timezone.get_current_timezone_name() != timezone.get_default_timezone_name():
        return "the page is in a time zone chosen for this visitor"
    return None


def publish(request: HttpRequest, outcome: Any, options: Any, vary: tuple[str, ...],
            key: str) -> str | None:  # fmt: skip
    """Write the page of ``outcome`` (a page just stored under ``key``, or a hit of it,
    second-level when ``vary``) for the web server, if its path matches ``URLS`` and
    :func:`refusal` allows (on a hit: if its file is missing, deleted by a purge that came
    after the page was stored again); return the file written (relative to the root), or
    ``None``. Never raises (a failure is logged: Django serves the page as before)."""
    from ..http.page import Page
    from ..stores import get_store

    publishing, using = _settings()
    page = outcome.value
    if publishing is None or using is None or not isinstance(page, Page):
        return None
    try:
        if not publishing.matches(request.path) or refusal(request, page, options, not vary):
            return None
        relative = publication_for(request)
        if relative is None:
            return None
        if outcome.hit and os.path.exists(os.path.join(publishing.root, relative)):
            return None
        store = get_store(options.store)
        body, tags = page.body, outcome.tags
        return _own_connection(
            using, lambda: _publish(publishing.root, relative, body, tags, key, store, using)
        )
    except Exception:
        logger.exception("freshcache: could not publish %s", request.path)
        return None


def _publish(root: str, relative: str, body: bytes, tags: Collection[str], key: str, store: Any,
             using: str) -> str | None:  # fmt: skip
    keys = sorted({edge_key(tag) for tag in tags})
    token = secrets.token_hex(8)
    conn = connections[using]
    target = os.path.join(root, relative)
    directory = os.path.dirname(target)
    # The temporary file first: a root that cannot be written (or a full disk) fails here,
    # before any index row is committed (rows nothing would ever delete).
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".fc-", suffix=".tmp")
    placed = indexed = False
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(body)
        os.chmod(temporary, 0o644)
        with transaction.atomic(using=using):  # 1. indexed (committed) before anything is visible
            indexed = True
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(chunk))
                params = [item for k in chunk for item in (relative, k, token, key, store.name)]
                _execute(conn, "INSERT INTO freshcache_published (path, key, token, entry, "
                         "store) VALUES " + values, params).close()  # fmt: skip
        # 2. Still what the page's entry holds, and valid: checked after the index is visible
        # to writers and before the file is, so a write either comes before this check (nothing
        # is published) or finds the index rows (below).
        if _still_current(store, key, body):
            with transaction.atomic(using=using):
                # 3. Renamed while holding this publication's rows: a writer deletes the rows
                # before it deletes the file (``_delete``), so it either deleted them already
                # (nothing is published) or waits for the rename and then deletes the file.
                held = _hold(conn, relative, token, every_token=True)
                if token in held:
                    os.replace(temporary, target)
                    placed = True
                    # The publications this one replaced: those held, never rows another
                    # publisher inserted since (it may hold them: a deadlock).
                    for other in sorted(held - {token}):
                        _execute(conn, "DELETE FROM freshcache_published WHERE path = %s AND "
                                 "token = %s", [relative, other]).close()  # fmt: skip
    finally:
        if not placed:
            with _quiet():
                os.unlink(temporary)
            if indexed:
                _execute(conn, "DELETE FROM freshcache_published WHERE path = %s AND "
                         "token = %s", [relative, token]).close()  # fmt: skip
    return relative if placed else None


def _still_current(store: Store, key: str, body: bytes) -> bool:
    """Whether ``key``'s entry is still valid (checked like a hit) and holds ``body``: a newer
    render of the page may have replaced the entry the file was written from."""
    from ..core import _decode, store_key
    from ..http.page import PAGE_CODEC, Page
    from ..log.relay import get_relay
    from ..stores import Hit

    relay = get_relay()
    failures = relay.failures
    try:
        found = store.lookup(store_key(key))
    except Exception:
        return False
    if not isinstance(found, Hit) or relay.hit_refused(failures):
        return False
    ok, page = _decode(store, found, key, PAGE_CODEC)
    return ok and isinstance(page, Page) and page.body == body


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> bool:
        return exc[0] is not None and issubclass(exc[0], OSError)


def _file_current(root: str, relative: str, entry: str, store_name: str) -> bool:
    """Whether the file on disk is the body its page's entry still holds, valid now."""
    from ..stores import get_store

    try:
        with open(os.path.join(root, relative), "rb") as file:
            body = file.read()
        return _still_current(get_store(store_name), entry, body)
    except Exception:
        return False


def unpublish(tags: Collection[str]) -> int:
    """Delete the published files that depend on any of ``tags`` (a writer, after its bump);
    return how many. Never raises: the purge queue deletes what this could not."""
    publishing, using = _settings()
    if publishing is None or using is None or not tags:
        return 0
    keys = {key for tag in tags for key in purge_keys(tag)}
    def run() -> int:
        found = _indexed(using, keys)
        deleted = _delete(publishing.root, using, [(path, token) for path, token, *_ in found])
        schedule(deleted)
        return len(deleted)

    try:
        return _own_connection(using, run)
    except Exception:
        logger.exception("freshcache: could not delete published files (the queue retries)")
        return 0


def unpublish_all() -> int:
    """Delete every published file (``manage.py freshcache clear``), those the index names and
    any other page file under ``ROOT``'s ``http`` and ``https`` directories; return how many.
    Raises ``DatabaseError``."""
    publishing, using = _settings()
    if publishing is None or using is None:
        return 0
    conn = connections[using]
    cursor = _execute(conn, "SELECT DISTINCT path, token FROM freshcache_published")
    rows = [(str(p), str(t)) for p, t in cursor.fetchall()]
    cursor.close()
    return len(_delete(publishing.root, using, rows)) + _sweep(publishing.root)


def _sweep(root: str) -> int:
    """Delete every page file left under ``<root>/http`` and ``<root>/https`` that no index row
    names any more (the index was flushed, restored from a backup, or ``LOG_DATABASE`` moved:
    no write can find such a file); return how many. Only files named ``index.html`` are
    touched; a publisher's temporary files (dot names) are left to it."""
    deleted = 0
    for scheme in ("http", "https"):
        for directory, _, names in os.walk(os.path.join(root, scheme)):
            if INDEX in names:
                with _quiet():
                    os.unlink(os.path.join(directory, INDEX))
                    deleted += 1
    return deleted


class Files(Purger):
    """The purger of published files: deletes the files indexed under the keys it is given,
    unless the file is what its page's entry holds and that entry is still valid.

    Added by ``EDGE["PUBLISH"]`` itself (name ``publish``); not configured in ``PURGERS``.
    """

    OPTIONS: ClassVar[dict[str, Any]] = {"ROOT": REQUIRED}
    MAX_KEYS = 500

    def purge(self, keys: list[str]) -> None:
        from ..conf import get_settings

        settings = get_settings()
        using = settings.log_database
        if using is None:
            raise PurgeFailed("LOG_DATABASE is None: the index of published files is not kept")
        publishing = settings.edge.publish
        root = publishing.root if publishing is not None else str(self.options["ROOT"])
        try:
            # Queued after the write's bump: a file whose entry still holds it and is valid
            # now was published after the write (the writer deleted the older one before it
            # returned); deleting it would only cost a render.
            for path, token, entry, store in _indexed(using, keys):
                schedule(_delete(root, using, [(path, token)],
                                 keep=lambda path: _file_current(root, path, entry, store)))  # noqa: B023
        except Exception as exc:
            raise PurgeFailed(f"could not delete published files: {exc}") from exc
        finally:
            connections[using].close_if_unusable_or_obsolete()
