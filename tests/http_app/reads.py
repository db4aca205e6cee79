"""Views that branch on one cookie or header, read one way each (issue 9 item 9.3).

``/t/reads/<source>/<way>/`` is cached by ``cache_page``; ``/t/reads-plain/<source>/<way>/`` is
the same view uncached: what each visitor should see.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse

from freshcache.http import cache_page

#: The value the "with" visitor sends, as the cookie ``consent`` or the header ``X-Consent``.
VALUE = "consent-yes"
#: source -> (the request attribute, the name a view asks it for)
SOURCES: dict[str, tuple[str, str]] = {
    "cookies": ("COOKIES", "consent"),
    "headers": ("headers", "X-Consent"),
    "meta": ("META", "HTTP_X_CONSENT"),
}


def _getitem(obj: Any, name: str) -> object:
    try:
        return obj[name]
    except KeyError:
        return "missing"


#: way -> how a view reads ``name`` from the mapping (each result differs with and without it)
WAYS: dict[str, Callable[[Any, str], object]] = {
    "get": lambda obj, name: obj.get(name),
    "getitem": _getitem,
    "in": lambda obj, name: name in obj,
    "not-in": lambda obj, name: name not in obj,
    "iter": lambda obj, name: [key for key in obj if key.lower() == name.lower()],
    "len": lambda obj, name: len(obj),
    "bool": lambda obj, name: bool(obj),
    "keys": lambda obj, name: name in obj.keys(),  # noqa: SIM118 - the KeysView is the point
    "items": lambda obj, name: dict(obj.items()).get(name),
    "values": lambda obj, name: VALUE in obj.values(),
    "copy": lambda obj, name: obj.copy().get(name),
    "dict": lambda obj, name: dict(obj).get(name),
}


def _read(request: HttpRequest, source: str, way: str) -> HttpResponse:
    if source not in SOURCES or way not in WAYS:
        raise Http404
    attr, name = SOURCES[source]
    return HttpResponse(f"{source} {way}: {WAYS[way](getattr(request, attr), name)!r}")


@cache_page
def cached_read(request: HttpRequest, source: str, way: str) -> HttpResponse:
    return _read(request, source, way)


def plain_read(request: HttpRequest, source: str, way: str) -> HttpResponse:
    return _read(request, source, way)
