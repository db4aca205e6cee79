"""Views that branch on one cookie or header, read one way each (issue 9 item 9.3).

``/t/reads/<source>/<way>/`` is cached by ``cache_page``; ``/t/reads-plain/<source>/<way>/`` is
the same view uncached: what each visitor should see.
"""

from __future__ import annotations

import copy
import json
import pickle
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
    # Django's request.COOKIES is a dict: everything a dict does works, and is a read.
    "json": lambda obj, name: json.dumps(obj, sort_keys=True),
    "repr": lambda obj, name: repr(obj),
    "str": lambda obj, name: str(obj),
    "or": lambda obj, name: (obj | {}).get(name),
    "ror": lambda obj, name: ({} | obj).get(name),
    "unpack": lambda obj, name: {**obj}.get(name),
    "pop": lambda obj, name: obj.pop(name, None),
    "setdefault": lambda obj, name: obj.setdefault(name, "default"),
    "eq": lambda obj, name: obj == {name: VALUE},
    "sorted": lambda obj, name: sorted(obj),
    "copy-module": lambda obj, name: copy.copy(obj).get(name),
    "pickle": lambda obj, name: pickle.loads(pickle.dumps(obj)).get(name),
}
#: The ways above that only a dict has (request.headers is a mapping, META holds unpicklable
#: server objects): run on cookies only.
DICT_ONLY = {
    "json", "repr", "str", "or", "ror", "unpack", "pop", "setdefault", "eq", "sorted",
    "copy-module", "pickle",
}  # fmt: skip


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


@cache_page(query_params=["page"])
def cached_query_copy(request: HttpRequest) -> HttpResponse:
    """``request.GET`` pickled and deep-copied, as some pagination helpers do."""
    again = pickle.loads(pickle.dumps(request.GET))
    return HttpResponse(f"page {again.get('page')} {copy.deepcopy(request.GET).get('page')}")


@cache_page
def cached_cookie_type(request: HttpRequest) -> HttpResponse:
    """What a view sees as ``request.COOKIES``: its type, and a dict write."""
    cookies = request.COOKIES
    cookies["seen"] = "1"
    made = cookies.fromkeys(["a"])
    return HttpResponse(f"{type(cookies).__name__} {isinstance(cookies, dict)} {made}")
