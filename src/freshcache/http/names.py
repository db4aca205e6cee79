"""The name a page is reported under (outcome events, metrics): its view, never its URL.

A URL has unbounded values (ids, slugs); a view is one of a fixed set. The name is the URL
pattern's name (namespaced: ``blog:post``) when it has one, else the view's dotted path, as
Django's ``ResolverMatch.view_name`` gives it; ``"<unresolved>"`` for a path no pattern matches.
"""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest
from django.urls import Resolver404, resolve

__all__ = ["view_name"]

UNRESOLVED = "<unresolved>"


def view_name(request: HttpRequest) -> str:
    """The name of the view serving ``request`` (resolved again on a hit the middleware served
    before Django resolved the URL; cached per path)."""
    match = getattr(request, "resolver_match", None)
    if match is not None:
        return str(match.view_name)
    urlconf = getattr(request, "urlconf", None) or settings.ROOT_URLCONF
    return _resolved(request.path_info, urlconf)


@lru_cache(maxsize=1024)
def _resolved(path: str, urlconf: object) -> str:
    try:
        return str(resolve(path, urlconf).view_name)  # type: ignore[arg-type]
    except (Resolver404, Exception):  # a broken URLconf is Django's to report, not ours
        return UNRESOLVED
