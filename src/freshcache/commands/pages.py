"""What ``inspect`` and ``why`` are given: a URL of this site or a key, and where its entry is.

A URL is requested as the page cache would see it: a GET built by Django's ``RequestFactory``
with the Host ``--host`` names (else the URL's own, else the first of ``ALLOWED_HOSTS``), the
URL's scheme, no cookies, and the ``SERVER_NAME``/``SERVER_PORT`` the WSGI/ASGI server passes
(``--server NAME:PORT``; page keys include them as sent, ``http/keys.py``: gunicorn passes its
bind address; the default, ``testserver:80``, is what Django's test client sends). The view it
resolves to says how it is cached (its own ``cache_page``, else ``CacheMiddleware``), and the
key is computed by ``http.serve.keys_for``, the function the page cache itself uses. A stored
Vary marker is followed to the page it names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.core.management.base import CommandError
from django.utils import translation

__all__ = ["Target", "entry_of", "is_url", "target_of"]

_HEX40 = re.compile(r"^[0-9a-f]{40}$")
#: ``freshcache.<namespace>:<digest>``; a namespace may hold colons (``view:blog.views.post``).
_PAGE_KEY = re.compile(r"^freshcache\.(?:page|site|view:[^\s]+):([^:]*)$")
_MIDDLEWARE = (
    "freshcache.middleware.CacheMiddleware",
    "freshcache.http.middleware.CacheMiddleware",
)


@dataclass
class Target:
    """Where to look: the logical ``key`` (``None`` when given a stored key), the stored key,
    the store's name, and for a URL its view's name and why it is not cached at all."""

    given: str
    skey: str
    store: str
    key: str | None = None
    url: str | None = None
    view: str | None = None
    how: str | None = None
    #: Why this request never uses the cache (not cached at all, or a bypass reason).
    uncached: str | None = None
    keyer: Any = None
    #: Vary headers followed from a marker stored under the first-level key.
    vary: tuple[str, ...] = field(default_factory=tuple)
    #: The language a page's key is computed in (the key holds the active language).
    language: str | None = None


def is_url(text: str) -> bool:
    return text.startswith("/") or text.startswith(("http://", "https://"))


def target_of(text: str, options: dict[str, Any]) -> Target:
    """The :class:`Target` for a URL or a key given on the command line."""
    from ..payload import store_key

    store = options.get("store") or "default"
    if is_url(text):
        return _url_target(text, options, store)
    if _HEX40.match(text):
        return Target(text, text, store)
    page = _PAGE_KEY.match(text)
    if page is not None and not _HEX40.match(page.group(1)):
        raise CommandError(
            f"{text!r} is not a page key: a page key is freshcache.<namespace>:<40 hex digits> "
            "(`inspect URL` computes it for you)"
        )
    if ":" not in text or any(c.isspace() for c in text):
        raise CommandError(
            f"{text!r} is neither a URL (/path/ or http://host/path/) nor a key: a page key "
            "(freshcache.page:<40 hex digits>), a fetch key such as report:2026, or a stored key "
            "(40 hex digits)"
        )
    return Target(text, store_key(text), store, key=text)


def _url_target(text: str, options: dict[str, Any], store: str) -> Target:
    from django.test import RequestFactory

    from ..edge.prerender import default_host

    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise CommandError(f"{text!r} is not a URL: {exc}") from exc
    host = options.get("host") or parts.netloc or default_host()
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {}
    for header in options.get("header") or ():
        name, colon, value = header.partition(":")
        if not colon or not name.strip():
            raise CommandError(f"--header {header!r}: give it as 'Name: value'")
        headers["HTTP_" + name.strip().upper().replace("-", "_")] = value.strip()
    server, colon, port = (options.get("server") or "testserver:80").rpartition(":")
    if not colon or not server or not port.isdigit():
        raise CommandError(f"--server {options.get('server')!r}: give it as NAME:PORT")
    headers.update(SERVER_NAME=server, SERVER_PORT=port)
    request = RequestFactory().get(path, HTTP_HOST=host, secure=parts.scheme == "https", **headers)
    shown = f"{request.scheme}://{host}{path}"
    language = _language(request, options.get("language"))
    with translation.override(language):
        return _page_target(request, shown, store, language)


def _language(request: Any, given: str | None) -> str:
    """The language the page is served in: ``given``, else as ``LocaleMiddleware`` (when
    installed) would choose it from the path, cookie and Accept-Language, else LANGUAGE_CODE."""
    from django.conf import settings
    from django.conf.urls.i18n import is_language_prefix_patterns_used

    if given:
        if not translation.check_for_language(given):
            raise CommandError(f"--language {given!r}: not a language of LANGUAGES")
        return given
    if "django.middleware.locale.LocaleMiddleware" in settings.MIDDLEWARE:
        prefixed, _ = is_language_prefix_patterns_used(settings.ROOT_URLCONF)
        return translation.get_language_from_request(request, check_path=prefixed)
    return str(settings.LANGUAGE_CODE)


def _page_target(request: Any, shown: str, store: str, language: str) -> Target:
    from django.conf import settings
    from django.urls import Resolver404, resolve

    from ..conf import get_settings
    from ..http.decorators import page_options
    from ..http.middleware import _OPTIONS as SITE
    from ..http.serve import keys_for
    from ..payload import store_key

    try:
        match = resolve(request.path_info)
    except Resolver404 as exc:
        raise CommandError(
            f"{shown}: no URL pattern matches {request.path_info!r} (a 404): nothing is cached "
            "for it"
        ) from exc
    request.resolver_match = match
    view = str(match.view_name)
    found = page_options(match.func, "GET")
    how = "cache_page" if found is not None else "CacheMiddleware"
    if found is None:
        if not any(m in _MIDDLEWARE for m in settings.MIDDLEWARE):
            return Target(shown, "", store, url=shown, view=view, how=None,
                          uncached="not cached: no cache_page on the view and no "
                          "CacheMiddleware")  # fmt: skip
        never = get_settings().never_cache_paths
        if any(request.path.startswith(p) for p in never):
            return Target(shown, "", store, url=shown, view=view, how=how,
                          uncached="not cached: under FRESHCACHE['NEVER_CACHE_PATHS']")  # fmt: skip
        found = SITE
    keyer = keys_for(request, found, match.args, match.kwargs)
    name = found.store or store
    if isinstance(keyer, str):
        return Target(shown, "", name, url=shown, view=view, how=how,
                      uncached=f"bypasses the cache: {keyer}")  # fmt: skip
    key = keyer(())
    return Target(shown, store_key(key), name, key=key, url=shown, view=view, how=how,
                  keyer=keyer, language=language)  # fmt: skip


def decode(store: Any, entry: Any, key: str | None) -> Any:
    """The value of a stored entry (a page, a Vary marker, a value), or ``None`` when it
    cannot be verified or decoded here (a stored key without its logical key, another
    ``SECRET_KEY``)."""
    from ..http.serve import CODEC
    from ..payload import PICKLE, _open, _unsigned

    if key is None:
        return None
    data = _open(entry.payload, key) if store.shared else _unsigned(entry.payload)
    if data is None:
        return None
    codec: Any = CODEC if _PAGE_KEY.match(key) else PICKLE
    try:
        return codec.loads(data)
    except Exception:
        return None


def entry_of(target: Target) -> tuple[Any, Any, Any]:
    """``(store, entry or None, decoded value or None)`` for ``target``; a Vary marker is
    followed to the page it names. Raises ``CommandError`` when the store cannot be read."""
    from ..http.page import VaryMarker
    from ..payload import store_key
    from ..stores import StoreUnavailable, get_store

    store = get_store(target.store)
    try:
        entry = store.inspect(target.skey)
        value = decode(store, entry, target.key) if entry is not None else None
        if isinstance(value, VaryMarker) and target.keyer is not None:
            target.vary = value.headers
            with translation.override(target.language):
                target.key = target.keyer(value.headers)
            target.skey = store_key(target.key)
            entry = store.inspect(target.skey)
            value = decode(store, entry, target.key) if entry is not None else None
    except NotImplementedError as exc:
        raise CommandError(f"store {store.name!r} ({store.url}) cannot be inspected") from exc
    except StoreUnavailable as exc:
        raise CommandError(f"store {store.name!r} cannot be reached: {exc}") from exc
    return store, entry, value
