"""The guarded mappings: ``request.COOKIES``, ``META`` (and ``environ``), ``headers``, ``GET``.

Each behaves as the object it stands for and reports every read to the guards (``_read``): one
name, or ``ANY`` when the whole mapping is enumerated, compared, copied or pickled. Writes go to
the real dicts. :func:`_keyed_meta` says which ``META`` names every page key covers.

The proxies keep ``freshcache.http.guard`` as their ``__module__``: their module path can reach
fragment keys, error messages and pickles (a pickled ``request.GET`` names :func:`_query_dict`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from django.conf import settings
from django.http import HttpRequest, QueryDict

from .reads import ANY, _read, _refuse, _stack

__all__ = [
    "_GuardedCookies",
    "_GuardedHeaders",
    "_GuardedMeta",
    "_GuardedQueryDict",
    "_keyed_meta",
    "_query_dict",
]


class _GuardedCookies(dict[str, str]):
    """``request.COOKIES``: a real ``dict`` (``json.dumps``, ``isinstance``, ``|`` and ``pop``
    work as on Django's), whose every way of reading reports what it read. Writes go to the
    request's real dict too, so they outlive the render. The dict holds the real cookies, so a C
    extension that reads a dict's storage directly gets the right values (but is not seen)."""
    __module__ = "freshcache.http.guard"

    def __init__(self, request: HttpRequest, real: dict[str, str]) -> None:
        super().__init__(real)
        self._request = request
        self._real = real

    def _check(self, name: object) -> None:
        if isinstance(name, str) and name != settings.CSRF_COOKIE_NAME:  # the CSRF placeholder
            _read(self._request, "cookie", name, dict.__contains__(self, name))

    def _all(self) -> None:
        _read(self._request, "cookie", ANY, dict.__len__(self) > 0)

    def __getitem__(self, name: str) -> str:
        self._check(name)
        return dict.__getitem__(self, name)

    def get(self, name: str, default: Any = None) -> Any:
        self._check(name)
        return dict.get(self, name, default)

    def __contains__(self, name: object) -> bool:
        self._check(name)
        return dict.__contains__(self, name)

    def __iter__(self) -> Iterator[str]:
        self._all()
        return dict.__iter__(self)

    def __reversed__(self) -> Iterator[str]:
        self._all()
        return dict.__reversed__(self)

    def __len__(self) -> int:
        self._all()
        return dict.__len__(self)

    def keys(self) -> Any:
        self._all()
        return dict.keys(self)

    def items(self) -> Any:
        self._all()
        return dict.items(self)

    def values(self) -> Any:
        self._all()
        return dict.values(self)

    def copy(self) -> dict[str, str]:
        self._all()
        return dict(dict.items(self))

    def __repr__(self) -> str:
        self._all()
        return dict.__repr__(self)

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        self._all()
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        self._all()
        return dict.__ne__(self, other)

    __hash__ = None

    def __or__(self, other: Any) -> Any:
        self._all()
        return dict(dict.items(self)) | other

    def __ror__(self, other: Any) -> Any:
        self._all()
        return other | dict(dict.items(self))

    def __reduce__(self) -> Any:  # pickle and copy: a plain dict
        self._all()
        return (dict, (dict(dict.items(self)),))

    def __reduce_ex__(self, protocol: Any) -> Any:
        return self.__reduce__()

    @classmethod
    def fromkeys(cls, keys: Any, value: Any = None) -> dict[str, Any]:  # type: ignore[override]
        return dict.fromkeys(keys, value)  # reads nothing: a plain dict, as Django's would give

    # -- writes: to both dicts; what a write reveals (presence, the old value) is a read ------

    def __setitem__(self, name: str, value: str) -> None:
        dict.__setitem__(self, name, value)
        self._real[name] = value

    def __delitem__(self, name: str) -> None:
        self._check(name)
        dict.__delitem__(self, name)
        self._real.pop(name, None)

    def pop(self, name: str, *default: Any) -> Any:
        self._check(name)
        self._real.pop(name, None)
        return dict.pop(self, name, *default)

    def popitem(self) -> tuple[str, str]:
        self._all()
        name, value = dict.popitem(self)
        self._real.pop(name, None)
        return name, value

    def setdefault(self, name: str, default: Any = None) -> Any:
        self._check(name)
        self._real.setdefault(name, default)
        return dict.setdefault(self, name, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        new = dict(*args, **kwargs)
        dict.update(self, new)
        self._real.update(new)

    def __ior__(self, other: Any) -> Any:
        self.update(other)
        return self

    def clear(self) -> None:
        dict.clear(self)
        self._real.clear()


# META names that are part of every page key, or carry no request data.
_ALWAYS_META = frozenset(
    {
        "REQUEST_METHOD",
        "PATH_INFO",
        "SCRIPT_NAME",
        "HTTP_HOST",
        "SERVER_NAME",
        "SERVER_PORT",
        "wsgi.url_scheme",
        "wsgi.input",
        "wsgi.errors",
        "wsgi.version",
        "wsgi.multithread",
        "wsgi.multiprocess",
        "wsgi.run_once",
        "wsgi.file_wrapper",
        "CSRF_COOKIE_NEEDS_UPDATE",
        "CONTENT_LENGTH",  # a GET with a body bypasses the cache before rendering
    }
)


def _keyed_meta(extra: frozenset[str]) -> frozenset[str]:
    names = set(_ALWAYS_META) | set(extra)
    if settings.USE_X_FORWARDED_HOST:
        names.add("HTTP_X_FORWARDED_HOST")
    if settings.USE_X_FORWARDED_PORT:
        names.add("HTTP_X_FORWARDED_PORT")
    if settings.SECURE_PROXY_SSL_HEADER:
        names.add(settings.SECURE_PROXY_SSL_HEADER[0])
    return frozenset(names)


class _GuardedMeta(MutableMapping[str, Any]):
    """``request.META``: reads are checked, writes go to the real dict (``get_token`` writes)."""
    __module__ = "freshcache.http.guard"

    def __init__(self, request: HttpRequest, real: dict[str, Any]) -> None:
        self._request = request
        self._real = real

    def _check(self, name: str) -> None:
        if name == "CSRF_COOKIE":
            for guard in _stack(self._request):
                guard.csrf_used = True
            return
        if name == "REQUEST_METHOD":  # GET and HEAD share a page: see method.py
            for guard in _stack(self._request):
                guard.absent.add(("method", str(self._real.get(name, ""))))
            return
        if name == "QUERY_STRING":
            stack = _stack(self._request)
            value = self._real.get(name, "")
            if stack and not all(g.raw_query_ok for g in stack) and value:
                _refuse(self._request, "read the raw query string, which differs from its key form")
            else:
                # Requests sharing the key may order or encode it differently: serve the stored
                # value only to requests whose raw query string is exactly this one.
                for guard in stack:
                    guard.absent.add(("rawquery", value))
            return
        _read(self._request, "meta", name, name in self._real, what=f"header {name!r}")

    def __getitem__(self, name: str) -> Any:
        self._check(name)
        return self._real[name]

    def get(self, name: str, default: Any = None) -> Any:
        self._check(name)
        return self._real.get(name, default)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self._check(name)
        return name in self._real

    def __setitem__(self, name: str, value: Any) -> None:
        if name == "CSRF_COOKIE":
            self._check(name)
        self._real[name] = value

    def __delitem__(self, name: str) -> None:
        del self._real[name]

    def __iter__(self) -> Iterator[str]:
        _read(self._request, "meta", ANY, True, what="every header")
        return iter(self._real)

    def __len__(self) -> int:
        # The count depends on which headers were sent (also bool(request.META)).
        _read(self._request, "meta", ANY, True, what="every header")
        return len(self._real)

    def copy(self) -> dict[str, Any]:
        _read(self._request, "meta", ANY, True, what="every header")
        return dict(self._real)


class _GuardedHeaders(Mapping[str, str]):
    """``request.headers``, checked through the ``META`` names it maps to."""
    __module__ = "freshcache.http.guard"

    def __init__(self, request: HttpRequest, real: Mapping[str, str], meta: dict[str, Any]) -> None:
        self._request = request
        self._real = real
        self._meta = meta

    def _check(self, header: str) -> None:
        from ..keys import header_meta_name

        name = header_meta_name(header)
        _read(self._request, "meta", name, name in self._meta, what=f"header {header!r}")

    def __getitem__(self, header: str) -> str:
        self._check(header)
        return self._real[header]

    def get(self, header: str, default: Any = None) -> Any:
        self._check(header)
        return self._real.get(header, default)

    def __contains__(self, header: object) -> bool:
        if isinstance(header, str):
            self._check(header)
        return header in self._real

    def __iter__(self) -> Iterator[str]:
        _read(self._request, "meta", ANY, True, what="every header")
        return iter(self._real)

    def __len__(self) -> int:
        _read(self._request, "meta", ANY, True, what="every header")
        return len(self._real)

    def copy(self) -> _GuardedHeaders:
        # Django's HttpHeaders.copy() returns the (immutable) mapping itself; so do we, and
        # reads through the copy stay tracked.
        return self


class _GuardedQueryDict(QueryDict):
    """``request.GET``: a read-only copy whose accessors report what they read."""
    __module__ = "freshcache.http.guard"

    _fc_request: HttpRequest

    @classmethod
    def wrap(cls, request: HttpRequest, real: QueryDict) -> _GuardedQueryDict:
        new = cls(mutable=True, encoding=real.encoding)
        for key, values in real.lists():
            new.setlist(key, list(values))
        new._mutable = False
        new._fc_request = request
        return new

    def _name(self, name: Any) -> None:
        if isinstance(name, str):
            _read(self._fc_request, "query", name, dict.__contains__(self, name))

    def _all(self) -> None:
        _read(self._fc_request, "query", ANY, dict.__len__(self) > 0)

    def __getitem__(self, key: str) -> Any:
        self._name(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self._name(key)
        return super().get(key, default)

    def getlist(self, key: str, default: Any = None) -> Any:
        self._name(key)
        return super().getlist(key, default)

    def __contains__(self, key: object) -> bool:
        self._name(key)
        return super().__contains__(key)

    def __iter__(self) -> Iterator[str]:
        self._all()
        return super().__iter__()

    def __len__(self) -> int:
        self._all()
        return super().__len__()

    def keys(self) -> Any:
        self._all()
        return super().keys()

    def items(self) -> Any:
        self._all()
        return super().items()

    def values(self) -> Any:
        self._all()
        return super().values()

    def lists(self) -> Any:
        self._all()
        return super().lists()

    def dict(self) -> Any:
        self._all()
        return super().dict()

    def urlencode(self, safe: str | None = None) -> str:
        self._all()
        return super().urlencode(safe)

    def copy(self) -> QueryDict:  # type: ignore[override]
        self._all()
        plain = QueryDict(mutable=True, encoding=self.encoding)
        for key, values in dict.items(self):
            plain.setlist(key, list(values))
        return plain

    def __copy__(self) -> QueryDict:  # type: ignore[override]
        return self.copy()

    def __deepcopy__(self, memo: Any) -> QueryDict:  # type: ignore[override]
        return self.copy()

    def __reduce_ex__(self, protocol: Any) -> Any:
        # Pickled as the plain QueryDict it stands for (its request is not picklable).
        self._all()
        lists = [(key, list(values)) for key, values in dict.items(self)]
        return (_query_dict, (self.encoding, lists))


def _query_dict(encoding: str, lists: list[tuple[str, list[str]]]) -> QueryDict:
    """A mutable ``QueryDict`` from ``lists``: how a pickled ``request.GET`` comes back."""
    plain = QueryDict(mutable=True, encoding=encoding)
    for key, values in lists:
        plain.setlist(key, values)
    return plain


# Pickles name it by this path: keep it, so a pickled request.GET loads in any version.
_query_dict.__module__ = "freshcache.http.guard"
