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
import re
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils import translation
from django.utils.functional import SimpleLazyObject, empty
from django.utils.safestring import SafeData, mark_safe

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
_MAX_DEPTH = 32


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
        if isinstance(value, SafeData) and isinstance(value, str):
            return ["safe", str(value)]
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
    if tag == "safe":
        return mark_safe(data[1])
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


def response_class(attributes: dict[str, Any]) -> type[HttpResponse]:
    """The carried response class (a ``django.http`` one), else ``HttpResponse``."""
    path = attributes.get("__class__")
    if isinstance(path, str) and path.startswith("django.http"):
        module, _, name = path.partition(":")
        found = getattr(importlib.import_module(module), name, None)
        if isinstance(found, type) and issubclass(found, HttpResponse) and not found.streaming:
            return found
    return HttpResponse


def new_response(
    attributes: dict[str, Any],
    body: bytes,
    status: int,
    *,
    cls: type[HttpResponse] | None = None,
    content_type: str | None = None,
) -> HttpResponse:
    """An ``HttpResponse`` (of the carried class) with ``body``, ``status`` and the attributes.

    ``cls``: :func:`response_class` of ``attributes``, if the caller has it already.
    """
    cls = response_class(attributes) if cls is None else cls
    response = cls.__new__(cls)
    # The base initializer: a subclass's own (a redirect's URL check, JSON encoding) has run
    # when the page was rendered; its results are in the stored headers and body.
    HttpResponse.__init__(response, body, status=status, content_type=content_type)
    if attributes:
        restore_attributes(response, attributes)
    return response


def restore_attributes(
    response: HttpResponseBase, attributes: dict[str, Any], *, marks_only: bool = False
) -> None:
    """Set the carried attributes on ``response`` (a hit; with ``marks_only``, the 304 standing
    for it, which keeps its own reason phrase and charset)."""
    for name, value in attributes.items():
        if name == "__class__" or (marks_only and name in _UNSET_BY_DEFAULT):
            continue
        setattr(response, name, _decode(value))


def csrf_request(request: HttpRequest) -> None:
    """Read the visitor's CSRF secret from their cookie as the render's CSRF decorator did
    (``CsrfViewMiddleware.process_request``), unless a middleware above did already; so the
    token filled in on a hit is of the visitor's own secret, not a new one."""
    if "CSRF_COOKIE" not in request.META:
        from django.middleware.csrf import CsrfViewMiddleware

        CsrfViewMiddleware(lambda request: None).process_request(request)  # type: ignore[arg-type]


def set_csrf_cookie(request: HttpRequest, response: HttpResponseBase) -> None:
    """Set the CSRF cookie on a hit as the render's own CSRF machinery did (a view decorated
    with ``@ensure_csrf_cookie`` or ``@requires_csrf_token`` on a site without
    ``CsrfViewMiddleware``): Django's ``CsrfViewMiddleware.process_response``, run here."""
    from django.middleware.csrf import CsrfViewMiddleware

    CsrfViewMiddleware(lambda request: response).process_response(request, response)


# -- request effects -----------------------------------------------------------------------------


def csp_nonce(request: HttpRequest, *, generate: bool = False) -> str | None:
    """The CSP nonce of ``request`` if it was generated (or ``generate``), else ``None``.

    Django 6.0 keeps a lazy nonce in ``request._csp_nonce``; django-csp a lazy
    ``request.csp_nonce`` that stores the generated text in ``request._csp_nonce``. Types are
    tested with ``type()``: ``isinstance(lazy, str)`` asks the lazy object's ``__class__``,
    which generates the nonce.
    """
    found = request.__dict__.get("_csp_nonce")
    if type(found) is str:
        return found
    if found is not None and issubclass(type(found), SimpleLazyObject):
        if found._wrapped is empty and not generate:
            return None
        return str(found)
    lazy = request.__dict__.get("csp_nonce")
    if generate and lazy is not None and issubclass(type(lazy), SimpleLazyObject):
        return str(lazy)
    return None


# What a transformation may put between the nonce's alphanumeric runs: the separator itself or
# its escape (``\u002B`` from ``|escapejs`` and JSON, ``%2B`` from URL-encoding, ``\x2b``,
# HTML character references).
_SEPARATOR = (
    rb"(?:%[0-9A-Fa-f]{2}|\\u[0-9A-Fa-f]{4}|\\x[0-9A-Fa-f]{2}|&#?[0-9A-Za-z]{1,8};"
    rb"|[^A-Za-z0-9]){1,4}"
)


def nonce_transformed(text: bytes, nonce: str) -> bool:
    """Whether ``text`` holds ``nonce`` in another form than as is (``|escapejs``, URL-encoded…).

    The nonce's alphanumeric runs are looked for in order, with the characters between them
    in any escaped form: more such matches than copies of the nonce itself means a transformed
    copy. A nonce with fewer than 8 alphanumeric characters (~48 random bits) is not judged.
    """
    runs = re.findall(r"[A-Za-z0-9]+", nonce)
    if sum(map(len, runs)) < 8:
        return False
    pattern = _SEPARATOR.join(re.escape(run.encode()) for run in runs)
    return len(re.findall(pattern, text)) > text.count(nonce.encode())


def has_csp_nonce(request: HttpRequest) -> bool:
    """Whether ``request`` went through a CSP middleware that offers a nonce."""
    for name in ("_csp_nonce", "csp_nonce"):
        found = request.__dict__.get(name)
        if found is not None and (type(found) is str or issubclass(type(found), SimpleLazyObject)):
            return True
    return False


def _flags(request: HttpRequest) -> list[tuple[Any, str]]:
    """The ``(object, attribute)`` flags middleware reads: session accessed, messages used."""
    from .guard import raw

    flags = []
    if "session" in vars(request):
        flags.append((raw(request, "session"), "accessed"))
    messages = request.__dict__.get("_messages")
    if messages is not None:
        flags.append((messages, "used"))
    return flags


def snapshot(request: HttpRequest) -> dict[str, Any]:
    """Take the request state :func:`effects_since` compares with, before a render.

    The session's ``accessed`` and the messages' ``used`` flags are cleared for the duration
    (and put back by :func:`effects_since`), so that what *this* render did is seen even when
    something before it already did the same: a fragment must record that it reads the session
    although the page around it read it first, or its hits in another page would lose the
    ``Vary: Cookie``.
    """
    flags = []
    for obj, attr in _flags(request):
        flags.append((obj, attr, bool(getattr(obj, attr, False))))
        try:
            setattr(obj, attr, False)
        except Exception:  # a session or storage of your own that refuses: read it as is
            flags[-1] = (obj, attr, False)
    return {
        "flags": flags,
        "csp_nonce": csp_nonce(request) is not None,
        "language": translation.get_language(),
    }


def effects_since(request: HttpRequest, before: dict[str, Any]) -> dict[str, Any]:
    """What the render did to ``request`` that a hit must do again (JSON data); restores the
    flags :func:`snapshot` cleared (set if set before or by the render)."""
    effects: dict[str, Any] = {}
    names = {"accessed": "session", "used": "messages"}
    for obj, attr, was in before["flags"]:
        now = bool(getattr(obj, attr, False))
        if now:
            effects[names[attr]] = True
        if was and not now:
            setattr(obj, attr, True)
    if csp_nonce(request) is not None and not before["csp_nonce"]:
        effects["csp_nonce"] = True
    if translation.get_language() != before["language"]:
        effects["language"] = translation.get_language()
    return effects


def apply_effects(request: HttpRequest, effects: dict[str, Any]) -> None:
    """Do to ``request`` what the stored render did, so the middleware above sees the same."""
    if not effects:
        return  # most pages: nothing to do again
    from .guard import raw

    if effects.get("session") and "session" in vars(request):
        # The real session: setting a flag on the guarded one would count as a write to it.
        raw(request, "session").accessed = True
    if effects.get("messages"):
        messages = getattr(request, "_messages", None)
        if messages is not None:
            messages.used = True
    if effects.get("csp_nonce"):
        csp_nonce(request, generate=True)
    language = effects.get("language")
    if isinstance(language, str):
        translation.activate(language)
