"""``@cache_page``: cache a view's response until the data it was built from changes."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, overload

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from ..tags import Taggable
from .serve import PageOptions, aserve, serve

__all__ = ["cache_page", "caches_itself", "page_options"]

V = TypeVar("V", bound=Callable[..., Any])

# Set on every view ``cache_page`` returns. ``functools.wraps`` copies a function's ``__dict__``,
# and so do ``method_decorator`` and ``View.as_view()``: the mark survives the usual decorators
# stacked above ``cache_page``, and reaches a class-based view decorated on ``dispatch``.
_MARK = "_freshcache_cache_page"
# The view's PageOptions, set beside the mark (and copied with it): ``page_options``.
_OPTIONS = "_freshcache_page_options"


def caches_itself(view: Callable[..., Any], method: str | None = None) -> bool:
    """Return whether ``view`` (a URL pattern's callback) is cached by its own ``cache_page``.

    ``CacheMiddleware`` steps aside for such views: the view's own declaration wins. A
    class-based view counts when ``cache_page`` decorates its ``dispatch`` or the handler of
    ``method`` (``"GET"``, ``"HEAD"``: a view without ``head`` answers HEAD with ``get``).
    """
    return _marked(view, method) is not None


def page_options(view: Callable[..., Any], method: str | None = None) -> PageOptions | None:
    """The options of the ``cache_page`` that caches ``view`` (as :func:`caches_itself` finds
    it), or ``None`` (``manage.py freshcache inspect`` keys a URL as that view does)."""
    marked = _marked(view, method)
    found = getattr(marked, _OPTIONS, None)
    return found if isinstance(found, PageOptions) else None


def _marked(view: Callable[..., Any], method: str | None) -> Any:
    seen = 0
    func: Any = view
    while func is not None and seen < 16:  # a decorator that kept __wrapped__ but not __dict__
        if getattr(func, _MARK, False):
            return func
        func, seen = getattr(func, "__wrapped__", None), seen + 1
    cls = getattr(view, "view_class", None)
    if cls is None:
        return None
    names = ["dispatch"]
    if method:
        names.append(method.lower())
        if method.upper() == "HEAD" and not hasattr(cls, "head"):
            names.append("get")
    for name in names:
        func = getattr(cls, name, None)
        if getattr(func, _MARK, False):
            return func
    return None


@overload
def cache_page(view: V) -> V: ...


@overload
def cache_page(
    view: None = None,
    *,
    vary_on_user: bool = False,
    vary_on_headers: Iterable[str] = (),
    query_params: Iterable[str] | None = None,
    tags: Iterable[Taggable] | Callable[..., Iterable[Taggable]] = (),
    store: str | None = None,
    statuses: Iterable[int] | None = None,
) -> Callable[[V], V]: ...


def cache_page(
    view: V | None = None,
    *,
    vary_on_user: bool = False,
    vary_on_headers: Iterable[str] = (),
    query_params: Iterable[str] | None = None,
    tags: Iterable[Taggable] | Callable[..., Iterable[Taggable]] = (),
    store: str | None = None,
    statuses: Iterable[int] | None = None,
) -> V | Callable[[V], V]:
    """Cache the view's response until any data it read changes; no timeout.

    ``vary_on_user``
        Cache one copy per user (logged-in users and visitors with a session are otherwise
        never served from or stored in the cache).
    ``vary_on_headers``
        Request headers the page depends on (``["Accept-Language"]``); reading any other header
        makes the response uncacheable.
    ``query_params``
        The query parameters that matter; others (``utm_source``…) are ignored and share the
        entry. The default keys on the whole normalised query string.
    ``tags``
        Extra dependencies: tags, model instances or classes, or a callable
        ``tags(request, *args, **kwargs)`` returning them.
    ``store``
        The name of a store in ``FRESHCACHE["STORES"]``.
    ``statuses``
        Status codes that may be stored (default ``FRESHCACHE["CACHE_STATUSES"]``, i.e. 200);
        301, 404, 410… may be opted in, 5xx never.

    Works on ``async def`` views, and on class-based views through ``method_decorator``::

        @cache_page
        def post_detail(request, slug): ...

        @cache_page(query_params=["page"], vary_on_headers=["Accept-Language"])
        async def front_page(request): ...

        @method_decorator(cache_page, name="dispatch")
        class PostView(DetailView): ...

    A ``TemplateResponse`` (what generic views return) is rendered inside the cached
    computation, so what its template reads is tracked; a streaming response is never stored.

    Under ``CacheMiddleware`` the view's own declaration wins: the middleware neither looks the
    page up nor stores it, and ``X-Freshcache`` reports what ``cache_page`` did.
    """
    codes = None if statuses is None else tuple(int(s) for s in statuses)
    if codes and any(code >= 500 for code in codes):
        raise ValueError("cache_page(statuses=...) cannot include 5xx: a cached error is a DoS")
    tag_function = tags if callable(tags) else None
    static_tags = () if callable(tags) else tuple(tags)
    base = PageOptions(
        vary_on_user=vary_on_user,
        vary_on_headers=tuple(h.lower() for h in vary_on_headers),
        query_params=None if query_params is None else frozenset(query_params),
        tags=static_tags,
        tag_function=tag_function,
        store=store,
        statuses=codes,
    )

    def decorator(func: V) -> V:
        name = f"view:{func.__module__}.{getattr(func, '__qualname__', repr(func))}"
        options = PageOptions(**{**base.__dict__, "namespace": name})
        if iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_view(request: Any, *args: Any, **kwargs: Any) -> Any:
                return await aserve(
                    request,
                    lambda: func(request, *args, **kwargs),
                    options,
                    args,
                    kwargs,
                    caller=async_view,
                )

            markcoroutinefunction(async_view)
            setattr(async_view, _MARK, True)
            setattr(async_view, _OPTIONS, options)
            return async_view  # type: ignore[return-value]

        @functools.wraps(func)
        def sync_view(request: Any, *args: Any, **kwargs: Any) -> Any:
            return serve(
                request,
                lambda: func(request, *args, **kwargs),
                options,
                args,
                kwargs,
                caller=sync_view,
            )

        setattr(sync_view, _MARK, True)
        setattr(sync_view, _OPTIONS, options)
        return sync_view  # type: ignore[return-value]

    if view is not None:
        return decorator(view)
    return decorator
