"""What a stored page carries besides status, headers and body, so a hit is the response the
view would have given (issue 10).

Middleware above the cache acts on the response we return, and on what the render did to the
request; a hit runs no view, so both are recorded when the page is stored and replayed on every
hit:

*Response attributes.* Django's decorators mark responses with attributes, not headers
(``@xframe_options_exempt`` sets ``response.xframe_options_exempt``, Django 6.0's
``@csp_override`` sets ``_csp_config``, django-csp's ``@csp_exempt()`` sets ``_csp_exempt``…), and
the middleware above reads them. Every attribute a render added to the response is carried, as
long as its value is plain data (strings, numbers, booleans, ``None``, and lists, tuples, sets
and string-keyed dicts of them, plus django-csp's ``NONCE`` sentinel); a value that is not
(an object of your own) makes the response uncacheable rather than silently lost. A custom
reason phrase, an explicit charset and the response class (a ``django.http`` one, such as
``JsonResponse`` or ``HttpResponseRedirect``) are carried too.

*Request effects.* What the render did to the request that middleware reads on the way out:

- the session was accessed (``SessionMiddleware`` then adds ``Vary: Cookie``);
- the messages were iterated (``MessageMiddleware`` then clears the messages cookie);
- the CSP nonce was generated (the CSP middleware then puts it in the header: Django 6.0's
  ``ContentSecurityPolicyMiddleware`` and django-csp's ``CSPMiddleware``);
- the view activated another language (``LocaleMiddleware`` sets ``Content-Language`` from it).

The CSRF token is the older case of the same thing (``Page.csrf_cookie``).
"""

from __future__ import annotations

import importlib
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils import translation
from django.utils.functional import SimpleLazyObject, empty

__all__ = [
    "apply_effects",
    "csp_nonce",
    "effects_since",
    "response_attributes",
    "restore_attributes",
    "snapshot",
]

# Attributes of Django's own responses that are state, not marks: never carried. (A fresh
# HttpResponse's and TemplateResponse's __dict__, what the handlers and the test client add
# after the response leaves the cache, and ours.)
_NOT_CARRIED = frozenset(
    {
        "_container", "_handler_class", "_resource_closers", "closed", "cookies", "headers",
        "status_code", "streaming_content", "_is_rendered", "_post_render_callbacks", "_request",
        "context_data", "template_name", "using", "_has_been_logged", "block_size",
        "_freshcache_cache_control", "_closable_objects",
    }
)
_UNSET_BY_DEFAULT = ("_reason_phrase", "_charset")  # carried only when the view set them
_SCALARS = (str, int, float, bool, type(None))
_CONTAINERS: dict[type, str] = {list: "l", tuple: "t", set: "s", frozenset: "f"}
_MAX_DEPTH = 8


def _csp_sentinel() -> Any:
    try:
        from csp.constants import NONCE
    except ImportError:  # django-csp not installed: nothing can hold its sentinel
        return None
    return NONCE


def _encode(value: Any, depth: int = 0) -> Any:
    """Encode ``value`` as JSON data that :func:`_decode` turns back into an equal value."""
    if depth > _MAX_DEPTH:
        raise TypeError("nested too deeply")
    if isinstance(value, _SCALARS):
        if isinstance(value, str) and type(value) is not str:
            return str(value)  # a StrEnum (Django's CSP.NONCE) compares equal to its text
        return value
    tag = _CONTAINERS.get(type(value))
    if tag is not None:
        return [tag, [_encode(item, depth + 1) for item in value]]
    if type(value) is dict:
        if not all(isinstance(k, str) for k in value):
            raise TypeError("a dict with keys that are not strings")
        return ["d", {str(k): _encode(v, depth + 1) for k, v in value.items()}]
    if value is not None and value is _csp_sentinel():
        return ["csp.NONCE"]
    raise TypeError(type(value).__qualname__)


def _decode(data: Any) -> Any:
    if not isinstance(data, list):
        return data
    tag = data[0]
    if tag == "csp.NONCE":
        return _csp_sentinel()
    if tag == "d":
        return {k: _decode(v) for k, v in data[1].items()}
    items = [_decode(item) for item in data[1]]
    kinds = {"l": list, "t": tuple, "s": set, "f": frozenset}
    return kinds[tag](items)


def response_attributes(response: HttpResponseBase) -> dict[str, Any] | str:
    """The attributes to carry for ``response`` (encoded), or why it cannot be stored."""
    carried: dict[str, Any] = {}
    for name, value in vars(response).items():
        if name in _NOT_CARRIED or (name in _UNSET_BY_DEFAULT and value is None):
            continue
        try:
            carried[name] = _encode(value)
        except TypeError as exc:
            return f"response attribute {name!r} holds {exc}, which cannot be stored"
    cls = type(response)
    if cls is not HttpResponse and cls.__module__.startswith("django.http"):
        carried["__class__"] = f"{cls.__module__}:{cls.__qualname__}"
    return carried


def new_response(attributes: dict[str, Any], body: bytes, status: int) -> HttpResponse:
    """An ``HttpResponse`` (of the carried class) with ``body``, ``status`` and the attributes."""
    cls: type[HttpResponse] = HttpResponse
    path = attributes.get("__class__")
    if isinstance(path, str) and path.startswith("django.http"):
        module, _, name = path.partition(":")
        found = getattr(importlib.import_module(module), name, None)
        if isinstance(found, type) and issubclass(found, HttpResponse) and not found.streaming:
            cls = found
    response = cls.__new__(cls)
    # The base initializer: a subclass's own (a redirect's URL check, JSON encoding) has run
    # when the page was rendered; its results are in the stored headers and body.
    HttpResponse.__init__(response, body, status=status)
    restore_attributes(response, attributes)
    return response


def restore_attributes(response: HttpResponseBase, attributes: dict[str, Any]) -> None:
    """Set the carried attributes on ``response`` (a hit, or the 304 standing for it)."""
    for name, value in attributes.items():
        if name != "__class__":
            setattr(response, name, _decode(value))


# -- request effects -----------------------------------------------------------------------------


def csp_nonce(request: HttpRequest, *, generate: bool = False) -> str | None:
    """The CSP nonce of ``request`` if it was generated (or ``generate``), else ``None``.

    Django 6.0 keeps a lazy nonce in ``request._csp_nonce``; django-csp a lazy
    ``request.csp_nonce`` that stores the generated text in ``request._csp_nonce``.
    """
    found = request.__dict__.get("_csp_nonce")
    if isinstance(found, str):
        return found
    if isinstance(found, SimpleLazyObject):
        if found._wrapped is empty and not generate:
            return None
        return str(found)
    lazy = request.__dict__.get("csp_nonce")
    if generate and isinstance(lazy, SimpleLazyObject):
        return str(lazy)
    return None


def snapshot(request: HttpRequest) -> dict[str, Any]:
    """The request state :func:`effects_since` compares with, taken before the render."""
    from .guard import raw

    session = raw(request, "session") if "session" in vars(request) else None
    messages = request.__dict__.get("_messages")
    return {
        "session": bool(getattr(session, "accessed", False)),
        "messages": bool(getattr(messages, "used", False)),
        "csp_nonce": csp_nonce(request) is not None,
        "language": translation.get_language(),
    }


def effects_since(request: HttpRequest, before: dict[str, Any]) -> dict[str, Any]:
    """What the render did to ``request`` that a hit must do again (JSON data)."""
    after = snapshot(request)
    effects: dict[str, Any] = {}
    for name in ("session", "messages", "csp_nonce"):
        if after[name] and not before[name]:
            effects[name] = True
    if after["language"] != before["language"]:
        effects["language"] = after["language"]
    return effects


def apply_effects(request: HttpRequest, effects: dict[str, Any]) -> None:
    """Do to ``request`` what the stored render did, so the middleware above sees the same."""
    if effects.get("session"):
        session = getattr(request, "session", None)
        if session is not None:
            session.accessed = True
    if effects.get("messages"):
        messages = getattr(request, "_messages", None)
        if messages is not None:
            messages.used = True
    if effects.get("csp_nonce"):
        csp_nonce(request, generate=True)
    language = effects.get("language")
    if isinstance(language, str):
        translation.activate(language)
