"""Placeholders: small per-request bits inside an otherwise shared cached page.

A cached page is stored once and served to everybody, so whatever must differ per request is
cut out before storing and filled in on every hit. Each cut-out is a *slot*: an offset in the
stored body and the name of a registered placeholder, whose ``fill(request)`` returns the text
for the request being served. Slots are kept beside the body, never written into it, so no
content (a comment that quotes a marker, say) can forge one.

Built in: ``"csrf_token"`` and ``"csp_nonce"`` (below). Django's ``{% csrf_token %}`` (and
anything calling ``get_token()``) writes a masked token into the page; freshcache finds every
masked form of the request's CSRF secret in the rendered body, cuts it out, and on each hit fills
in ``get_token(request)`` for the *current* request, which also makes ``CsrfViewMiddleware``
send the CSRF cookie exactly as it would have for an uncached render. One visitor's token is never
stored nor shown to another.

The CSP nonce (Django 6.0's ``ContentSecurityPolicyMiddleware``, django-csp's ``CSPMiddleware``)
is the same kind of thing: a render that generated the nonce has every occurrence of it in the
body cut out, and each hit fills in (and so generates) the nonce of the request being served,
which the CSP middleware above then sends in that response's header.

Your own, e.g. a greeting::

    from freshcache.http import register_placeholder

    register_placeholder("greeting", lambda request: "Bonjour" if ... else "Hello")

and in a template, ``{% load freshcache %}{% placeholder "greeting" %}``: the tag outputs a
per-render random marker while a cached page renders (cut into a slot afterwards) and the filled
value everywhere else. ``fill`` runs on every hit: keep it cheap, and remember that what it reads
is not tracked (it runs outside the cached render by design).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest
from django.middleware.csrf import (  # type: ignore[attr-defined]
    CSRF_SECRET_LENGTH,
    CSRF_TOKEN_LENGTH,
    _unmask_cipher_token,
    get_token,
)

from . import carry
from .guard import Guard, raw

__all__ = [
    "CSP_NONCE",
    "CSRF",
    "Placeholder",
    "fill",
    "placeholder",
    "register_placeholder",
    "validator",
]

CSRF = "csrf_token"
CSP_NONCE = "csp_nonce"


@dataclass(frozen=True)
class Placeholder:
    """A registered placeholder: ``fill(request)`` gives its text for one request.

    ``validator(request)``, if given, returns a short string that changes whenever ``fill`` would
    produce a materially different text for this client (it goes into the ETag); without one,
    pages using the placeholder get no ETag and never a 304.
    """

    name: str
    fill: Callable[[HttpRequest], str]
    validator: Callable[[HttpRequest], str | None] | None = None


_registry: dict[str, Placeholder] = {}


def register_placeholder(
    name: str,
    fill: Callable[[HttpRequest], str],
    *,
    validator: Callable[[HttpRequest], str | None] | None = None,
) -> None:
    """Register (or replace) the placeholder ``name``.

    >>> register_placeholder("year", lambda request: "2025")
    """
    if not name or not name.isascii() or not name.isprintable():
        raise ValueError(f"a placeholder name must be printable ASCII, not {name!r}")
    _registry[name] = Placeholder(name, fill, validator)


def get(name: str) -> Placeholder:
    try:
        return _registry[name]
    except KeyError:
        raise LookupError(
            f"no freshcache placeholder named {name!r}; register it with "
            "freshcache.http.register_placeholder()"
        ) from None


def placeholder(request: HttpRequest | None, name: str) -> str:
    """Return the text standing for placeholder ``name`` in the output being rendered.

    Inside a cached render this is a random marker that becomes a slot; elsewhere it is simply
    ``fill(request)``.
    """
    entry = get(name)
    stack: list[Guard] = (request.__dict__.get("_freshcache_guards") or []) if request else []
    if stack:
        return stack[-1].marker(name)
    if request is None:
        raise ValueError(f"placeholder {name!r} needs the request (is it in the context?)")
    return entry.fill(request)


def fill(request: HttpRequest, name: str, cache: dict[str, str]) -> str:
    """Return the text for slot ``name``; one value per request (like ``{% csrf_token %}``)."""
    if name not in cache:
        cache[name] = get(name).fill(request)
    return cache[name]


def validator(request: HttpRequest, names: set[str]) -> str | None:
    """Return the part of an ETag that identifies what the slots hold for this client."""
    parts = []
    for name in sorted(names):
        entry = get(name)
        if entry.validator is None:
            return None
        value = entry.validator(request)
        if value is None:
            return None
        parts.append(f"{name}={value}")
    return ";".join(parts)


# -- CSRF --------------------------------------------------------------------------------------
_TOKEN_RE = re.compile(rb"(?<![A-Za-z0-9])[A-Za-z0-9]{%d}(?![A-Za-z0-9])" % CSRF_TOKEN_LENGTH)


def csrf_secret(request: HttpRequest) -> str | None:
    secret = raw(request, "META").get("CSRF_COOKIE")
    return secret if isinstance(secret, str) and len(secret) == CSRF_SECRET_LENGTH else None


def find_csrf_tokens(body: bytes, secret: str) -> list[tuple[int, int]]:
    """Return the ``(start, end)`` spans of every masked form of ``secret`` in ``body``."""
    spans = []
    for match in _TOKEN_RE.finditer(body):
        try:
            if _unmask_cipher_token(match.group().decode("ascii")) == secret:
                spans.append(match.span())
        except ValueError:  # pragma: no cover - the regex admits only token characters
            continue
    return spans


def contains_csrf_secret(text: bytes, secret: str) -> bool:
    """True if ``text`` holds the secret itself or one of its masked forms."""
    return secret.encode() in text or bool(find_csrf_tokens(text, secret))


def _csrf_validator(request: HttpRequest) -> str | None:
    secret = csrf_secret(request)
    if secret is None:
        return None  # a new visitor: whatever they cached is not for this secret
    key = hashlib.blake2b(settings.SECRET_KEY.encode(), person=b"freshcache-etag").digest()
    return hmac.new(key, secret.encode(), "sha256").hexdigest()[:16]


register_placeholder(CSRF, get_token, validator=_csrf_validator)


# -- CSP nonces ----------------------------------------------------------------------------------
def _csp_nonce(request: HttpRequest) -> str:
    """This request's CSP nonce, generated now (so the CSP middleware puts it in the header).

    Without a CSP middleware there is no nonce, and an uncached render prints nothing either.
    """
    return carry.csp_nonce(request, generate=True) or ""


# No validator: a 304 would keep the body of an earlier response, whose nonce is not the one
# in the header the CSP middleware sends with the 304 (RFC 9111 §4.3.4 updates the stored
# headers from it), so the browser would block the page's inline scripts.
register_placeholder(CSP_NONCE, _csp_nonce)
