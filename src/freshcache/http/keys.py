"""Page keys: which parts of a request name a cached page, and how they are framed.

A page key covers, in this order: the method class (GET and HEAD share one), the scheme, the
validated host (``request.get_host()``, so ``ALLOWED_HOSTS`` and ``USE_X_FORWARDED_HOST`` apply),
the server port, the path and path info, the raw headers all of these are derived from (see
:func:`derived_meta`), the normalised query string (or only its allowlisted
parameters), the active language and time zone, the user when the view varies per user, and the
value of every header the page varies on (an absent header and an empty one differ).

Each part is framed with its length (``3:abc``) and an absent value with ``-``, so that no two
different requests can produce the same text (``a|bc`` vs ``ab|c``, CVE-2020-13254), and the
text is hashed (BLAKE2b) so a key is short, ASCII and of bounded size however large the request.

The query string is bounded (``MAX_QUERY_PARAMS``, ``MAX_QUERY_LENGTH``): past the bound the
request bypasses the cache, so random query strings cannot mint unbounded entries and evict the
pages that matter (reliability notes S6).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from django.conf import settings as django_settings
from django.http import HttpRequest, QueryDict
from django.utils import timezone, translation

from ..conf import get_settings
from ..tags import normalize_tag

__all__ = [
    "QueryKey",
    "derived_meta",
    "frame",
    "header_meta_name",
    "normalized_query",
    "page_key",
    "url_tag",
]


def frame(parts: Iterable[str | None]) -> str:
    """Join ``parts`` so that the result determines them: ``3:abc`` per part, ``-`` for ``None``.

    >>> frame(["a", "bc"]) != frame(["ab", "c"])
    True
    >>> frame([None]) != frame([""])
    True
    """
    out = []
    for part in parts:
        out.append("-" if part is None else f"{len(part)}:{part}")
    return ",".join(out)


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=20).hexdigest()


def header_meta_name(header: str) -> str:
    """Return the ``META`` name of a header: ``Accept-Language`` -> ``HTTP_ACCEPT_LANGUAGE``."""
    name = header.strip().upper().replace("-", "_")
    if name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        return name
    return "HTTP_" + name


@dataclass(frozen=True)
class QueryKey:
    """The keyed part of a query string, or why the request must bypass the cache."""

    #: ``(name, [values…])`` sorted by name; values keep their order. ``None`` when bypassing.
    pairs: tuple[tuple[str, tuple[str, ...]], ...] | None
    #: Parameters present in the request but left out of the key (outside the allowlist).
    unkeyed: frozenset[str]
    #: The query string a view would read if it equals the key exactly (see ``raw_query_ok``).
    canonical: str
    bypass: str | None = None


_NO_QUERY = QueryKey((), frozenset(), "")


def normalized_query(
    request: HttpRequest,
    allowlist: frozenset[str] | None,
    raw_get: QueryDict | None = None,
) -> QueryKey:
    """Return the normalised, bounded query part of the key for ``request``.

    The bounds are checked on the raw string before anything is parsed, so ten thousand
    parameters cost one ``len()`` and never reach Django's parser (whose own limit would raise).
    """
    settings = get_settings()
    raw = request.META.get("QUERY_STRING", "") if raw_get is None else None
    if raw is not None:
        if len(raw) > settings.max_query_length:
            return QueryKey(None, frozenset(), "", bypass="query string too long")
        if raw and raw.count("&") + 1 > settings.max_query_params:
            return QueryKey(None, frozenset(), "", bypass="too many query parameters")
        if not raw and "GET" not in vars(request):
            return _NO_QUERY  # most pages: nothing to parse (request.GET is not parsed yet)
    get = raw_get if raw_get is not None else request.GET
    lists = sorted(get.lists(), key=lambda item: item[0])
    if allowlist is None:
        kept = lists
        unkeyed: frozenset[str] = frozenset()
    else:
        kept = [(k, v) for k, v in lists if k in allowlist]
        unkeyed = frozenset(k for k, _ in lists if k not in allowlist)
    pairs = tuple((k, tuple(v)) for k, v in kept)
    canonical = urlencode([(k, value) for k, values in pairs for value in values])
    return QueryKey(pairs, unkeyed, canonical)


def page_key(
    request: HttpRequest,
    query: QueryKey,
    *,
    host: str,
    headers: Sequence[tuple[str, str | None]] = (),
    user: str | None = None,
    namespace: str = "page",
) -> str:
    """Return the hashed key of a page for ``request``.

    ``headers`` are ``(header name, value or None)`` pairs, already sorted by the caller.
    """
    assert query.pairs is not None
    meta = request.META
    parts: list[str | None] = [
        "v2",
        namespace,
        "GET",  # GET and HEAD share entries; other methods never reach here
        request.scheme,
        host,
        str(request.META.get("SERVER_PORT", "")),
        request.path,
        request.path_info,
        translation.get_language(),
        timezone.get_current_timezone_name(),
        user,
        # What the scheme, host, port and path were derived from, as sent: a view may read the
        # raw header (META["HTTP_HOST"]) instead of get_host(), and must then see the key's.
        *(_text(meta.get(name)) for name in derived_meta()),
        str(len(query.pairs)),
    ]
    for name, values in query.pairs:
        parts.append(name)
        parts.append(str(len(values)))
        parts.extend(values)
    parts.append(str(len(headers)))
    for header, value in headers:
        parts.append(header.lower())
        parts.append(value)
    return f"freshcache.{namespace}:{_digest(frame(parts))}"


def derived_meta() -> tuple[str, ...]:
    """The ``META`` names Django derives the scheme, host, port and path from, in this project.

    ``request.get_host()``, ``get_port()``, ``scheme`` and ``path`` read them; each is part of every
    page key as sent (not only the derived value), so reading one raw is reading the key. The
    forwarded headers count only when the settings make Django trust them
    (``USE_X_FORWARDED_HOST``, ``USE_X_FORWARDED_PORT``, ``SECURE_PROXY_SSL_HEADER``); otherwise
    reading one is reading an unkeyed header.
    """
    names = ["HTTP_HOST", "SERVER_NAME", "SERVER_PORT", "SCRIPT_NAME", "PATH_INFO"]
    names.append("wsgi.url_scheme")
    if django_settings.USE_X_FORWARDED_HOST:
        names.append("HTTP_X_FORWARDED_HOST")
    if django_settings.USE_X_FORWARDED_PORT:
        names.append("HTTP_X_FORWARDED_PORT")
    if django_settings.SECURE_PROXY_SSL_HEADER:
        names.append(str(django_settings.SECURE_PROXY_SSL_HEADER[0]))
    return tuple(names)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def url_tag(url: str) -> str:
    """Return the tag every cached page at ``url``'s path depends on: ``url:/post/7/``.

    The host, query string and fragment are ignored, so invalidating a URL invalidates every
    variant of the page (all hosts, languages, query strings). Long paths become a digest.

    >>> url_tag("https://example.com/post/7/?page=2")
    'url:/post/7/'
    """
    path = urlsplit(url).path or "/"
    return normalize_tag("url:" + path)
