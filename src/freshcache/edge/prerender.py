"""Pre-render pages for static publishing (``manage.py freshcache publish``, docs/edge.md).

Each path is requested through the project's own stack in this process (Django's test
``Client``: every middleware and view, no network), so a page that qualifies is stored and
written under ``EDGE["PUBLISH"]["ROOT"]`` exactly as a first visitor's request would.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["Rendered", "default_host", "paths_of_sitemap", "prerender"]

_LOC = re.compile(rb"<loc>\s*([^<\s]+)\s*</loc>")


@dataclass(frozen=True)
class Rendered:
    path: str
    status: int
    #: ``published``, ``served`` (answered but not written: the reason follows) or ``failed``.
    result: str
    reason: str = ""


def default_host() -> str:
    """The Host of pre-rendered requests: the first of ``ALLOWED_HOSTS`` that names one host
    (not ``*``, not a ``.domain`` pattern), else ``localhost``."""
    from django.conf import settings

    hosts = [h for h in settings.ALLOWED_HOSTS if h != "*" and not h.startswith(".")]
    return hosts[0] if hosts else "localhost"


def _client(host: str) -> object:
    from django.test import Client

    return Client(HTTP_HOST=host, raise_request_exception=False)


def paths_of_sitemap(sitemap: str, host: str) -> list[str]:
    """The paths of the ``<loc>`` URLs of the sitemap at ``sitemap`` (a path of this site).

    Raises ``ValueError`` when the sitemap does not answer 200."""
    response = _client(host).get(sitemap)  # type: ignore[attr-defined]
    if response.status_code != 200:
        raise ValueError(f"{sitemap} answered {response.status_code}, not 200")
    body = b"".join(response) if response.streaming else response.content
    return [urlsplit(loc.decode()).path or "/" for loc in _LOC.findall(body)]


def _path_of(given: str) -> str | None:
    """The path (and query) to request for ``given``: a path, or a URL of which the host is
    ignored (``--host`` names it); ``None`` for anything else."""
    parts = urlsplit(given)
    if parts.scheme in ("http", "https") and parts.netloc:
        path = parts.path or "/"
        return path + ("?" + parts.query if parts.query else "")
    if not given.startswith("/") or parts.scheme or given.startswith("//"):
        return None
    return given


def prerender(
    paths: Iterable[str],
    host: str,
    progress: Callable[[int, Rendered], None] | None = None,
    *,
    secure: bool = False,
) -> list[Rendered]:
    """Request each path (GET, no cookies) and report whether its file was written."""
    import os

    from ..conf import get_settings
    from .publish import file_for, site_of

    publishing = get_settings().edge.publish
    client = _client(host)
    done: list[Rendered] = []
    for index, given in enumerate(dict.fromkeys(paths)):
        path = _path_of(given)
        site = site_of("https" if secure else "http", host)
        relative = file_for(path) if path is not None else None
        relative = None if relative is None or site is None else f"{site}/{relative}"
        if path is None:
            rendered = Rendered(given, 0, "failed", "not a path of this site: a path starts "
                                "with / (such as /post/7/)")  # fmt: skip
            done.append(rendered)
            if progress is not None:
                progress(index, rendered)
            continue
        for _attempt in range(2):  # a hit writes the file if the miss could not
            response = client.get(path, secure=secure)  # type: ignore[attr-defined]
            if publishing is None or relative is None or response.status_code != 200:
                break
            if os.path.exists(os.path.join(publishing.root, relative)):
                break
        state = response.get("X-Freshcache", "")
        status = response.status_code
        if publishing is None or relative is None:
            why = ("a query string is never published" if "?" in path else
                   "not a publishable path: it must end in / and have no hidden or dot segments")
            rendered = Rendered(given, status, "served", why)
        elif os.path.exists(os.path.join(publishing.root, relative)):
            rendered = Rendered(given, status, "published")
        elif status >= 500:
            rendered = Rendered(given, status, "failed", "the view failed")
        elif status != 200:
            hint = f" (is {host!r} in ALLOWED_HOSTS? --host names it)" if status == 400 else ""
            rendered = Rendered(given, status, "served", f"answered {status}, not 200{hint}")
        else:
            why = "not stored, or the page is not the same for every visitor"
            rendered = Rendered(given, status, "served", state or why)
        done.append(rendered)
        if progress is not None:
            progress(index, rendered)
    return done
