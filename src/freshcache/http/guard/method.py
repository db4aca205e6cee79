"""The guarded ``request.method``: GET and HEAD share a page, unless the render read the method.

A page is only ever stored from a GET render and HEAD requests are served from it, which is what
an uncached render would give only if the view answers HEAD as it answers GET. A view that looks
at the method may not (``@require_GET`` answers HEAD with 405; a class-based view without
``head`` in ``http_method_names`` too). So while a page renders, ``request.method`` is a ``str``
that records any use of it as a condition of the stored page (``("method", "GET")``), and a HEAD
request for such a page gets a render of its own.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from .reads import _stack

__all__ = ["_GuardedMethod"]


class _GuardedMethod(str):
    """``request.method`` during a guarded render: every use of it is recorded."""

    __module__ = "freshcache.http.guard"
    _fc_request: HttpRequest

    def __new__(cls, request: HttpRequest, value: str) -> _GuardedMethod:
        self = super().__new__(cls, value)
        self._fc_request = request
        return self

    def _fc_read(self) -> str:
        value = str.__str__(self)
        for guard in _stack(self._fc_request):
            guard.absent.add(("method", value))
        return value

    def __eq__(self, other: object) -> bool:
        return self._fc_read() == other

    def __ne__(self, other: object) -> bool:
        return self._fc_read() != other

    def __hash__(self) -> int:
        return hash(self._fc_read())

    def __str__(self) -> str:
        return self._fc_read()

    def __repr__(self) -> str:
        return repr(self._fc_read())

    def __format__(self, spec: str) -> str:
        return format(self._fc_read(), spec)

    def __getitem__(self, index: Any) -> str:
        return self._fc_read()[index]

    def __contains__(self, part: object) -> bool:
        return part in self._fc_read()  # type: ignore[operator]

    def __iter__(self) -> Any:
        return iter(self._fc_read())

    def __len__(self) -> int:
        return len(self._fc_read())

    def __add__(self, other: str) -> str:
        return self._fc_read() + other

    def __radd__(self, other: str) -> str:
        return other + self._fc_read()

    def __mod__(self, other: Any) -> str:
        return self._fc_read() % other

    def __reduce__(self) -> Any:  # pickled as the plain string (its request is not picklable)
        return (str, (self._fc_read(),))

    def __reduce_ex__(self, protocol: Any) -> Any:
        return self.__reduce__()

    def __getattribute__(self, name: str) -> Any:
        # Every other str method (lower, upper, startswith, encode…) reads the method.
        if name.startswith(("_fc", "__")):
            return super().__getattribute__(name)
        method = getattr(str, name, None)
        if callable(method):
            value = self._fc_read()
            return getattr(value, name)
        return super().__getattribute__(name)
