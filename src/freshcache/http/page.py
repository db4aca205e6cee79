"""A cached page: what is stored, how it is checked before storing, and how a hit is served.

Stored format (no pickle, nothing executable): a 4-byte big-endian length, a JSON header
(status, headers, slots, conditions, ETag) and the raw body bytes. A payload that does not parse
exactly is a miss (the core already verified its HMAC in shared stores).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseNotModified
from django.template.response import SimpleTemplateResponse
from django.utils.cache import (  # type: ignore[attr-defined]
    cc_delim_re,
    get_conditional_response,
)

from . import carry, placeholders
from .guard import Guard, record_absent

__all__ = ["Page", "PageCodec", "VaryMarker", "page_from_response", "response_from_page"]

logger = logging.getLogger("freshcache.http")

# Headers never stored: ours (X-Freshcache), or refused before storing (Set-Cookie).
_UNSTORED = frozenset({"x-freshcache", "set-cookie"})


def _stored_headers(response: HttpResponseBase) -> list[tuple[str, str]]:
    ours = getattr(response, "_freshcache_cache_control", False)
    return [
        (k, v)
        for k, v in response.items()
        if k.lower() not in _UNSTORED and not (ours and k.lower() == "cache-control")
    ]
_REFUSED_CACHE_CONTROL = ("private", "no-store", "no-cache")


@dataclass
class Page:
    """A response as stored: body without its per-request slots, plus what is needed to serve it."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    #: ``(offset in body, placeholder name)``, offsets ascending.
    slots: list[tuple[int, str]] = field(default_factory=list)
    #: ``(source, name)`` request inputs that must be absent to serve this page.
    absent: list[tuple[str, str]] = field(default_factory=list)
    #: On a hit, call ``get_token()`` so the CSRF cookie is sent as Django would.
    csrf_cookie: bool = False
    #: Hash of the stored body and slots (the ETag of a page without slots).
    digest: str = ""
    #: Tags the page depends on (filled from the fetch outcome; not stored).
    tags: frozenset[str] = frozenset()
    #: Response attributes and class, encoded (``carry.response_attributes``).
    attributes: dict[str, Any] = field(default_factory=dict)
    #: What the render did to the request, replayed on hits (``carry.effects_since``).
    effects: dict[str, Any] = field(default_factory=dict)
    #: What serving it takes that is the same for every request (``_Served``): worked out on
    #: its first hit and kept with it, since a near cache serves one decoded page to every hit
    #: from memory. Never stored.
    served: _Served | None = field(default=None, init=False, compare=False, repr=False)
    #: Responses recorded for early hits (``early.py``), by early key: kept with the decoded
    #: page in the near cache, so they go with it. Never stored.
    early: dict[Any, Any] | None = field(default=None, init=False, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class _Served:
    """The per-page part of building a hit's response (``response_from_page``)."""

    #: The response class (``carry.response_class``).
    cls: type[HttpResponse]
    #: The stored ``Content-Type``, given to the response's initializer; ``None``: none stored.
    content_type: str | None
    #: The other stored headers, in order; a ``Content-Length`` is set from the body served.
    headers: tuple[tuple[str, str], ...]
    #: The page's ETag if no request changes it (no slots), else ``None`` with ``per_request``.
    etag: str | None
    per_request: bool


@dataclass(frozen=True)
class VaryMarker:
    """Stored under a URL's first-level key when its response varies on undeclared headers."""

    headers: tuple[str, ...]


def _digest(body: bytes, slots: list[tuple[int, str]]) -> str:
    h = hashlib.blake2b(body, digest_size=16)
    h.update(json.dumps(slots).encode())
    return h.hexdigest()


class PageCodec:
    """``Page``/``VaryMarker`` <-> bytes, without pickle."""

    #: Pages are only read when served (``response_from_page`` copies what it changes).
    shareable = True

    def dumps(self, value: Any) -> bytes:
        if isinstance(value, VaryMarker):
            header: dict[str, Any] = {"v": 2, "vary": list(value.headers)}
            body = b""
        else:
            assert isinstance(value, Page)
            header = {
                "v": 2,
                "status": value.status,
                "headers": value.headers,
                "slots": value.slots,
                "absent": value.absent,
                "csrf_cookie": value.csrf_cookie,
                "digest": value.digest,
                "attributes": value.attributes,
                "effects": value.effects,
            }
            body = value.body
        encoded = json.dumps(header, separators=(",", ":")).encode()
        return len(encoded).to_bytes(4, "big") + encoded + body

    def memo_cost(self, value: Page | VaryMarker, payload: bytes) -> int:
        """Bytes held by ``payload`` and the value decoded from it: the body once more, and
        the JSON header about 12 times (its headers, slots and conditions become tuples and
        strings; measured with ``tracemalloc`` on a page of 8,000 headers: 11.7x)."""
        body = len(value.body) if isinstance(value, Page) else 0
        return len(payload) + body + 12 * max(0, len(payload) - body)

    def loads(self, data: bytes) -> Page | VaryMarker:
        size = int.from_bytes(data[:4], "big")
        header = json.loads(data[4 : 4 + size])
        if not isinstance(header, dict) or header.get("v") != 2:
            raise ValueError("not a freshcache page")
        if "vary" in header:
            return VaryMarker(tuple(_strs(header["vary"])))
        body = data[4 + size :]
        slots = [(int(o), str(n)) for o, n in header["slots"]]
        if any(not 0 <= o <= len(body) for o, _ in slots):
            raise ValueError("slot outside the body")
        return Page(
            status=int(header["status"]),
            headers=[(str(k), str(v)) for k, v in header["headers"]],
            body=body,
            slots=slots,
            absent=[(str(s), str(n)) for s, n in header["absent"]],
            csrf_cookie=bool(header["csrf_cookie"]),
            digest=str(header["digest"]),
            attributes=_dict(header["attributes"]),
            effects=_dict(header["effects"]),
        )


#: The codec of every stored page: one object, since the decoded-value memo
#: (``payload._Decoded``) reuses a value only for the codec that decoded it.
PAGE_CODEC = PageCodec()


def _dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("bad mapping")
    return value


def _strs(items: Any) -> list[str]:
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ValueError("bad list")
    return items


def vary_headers(response: HttpResponseBase) -> list[str]:
    if not response.has_header("Vary"):
        return []
    return [h.strip().lower() for h in cc_delim_re.split(response["Vary"]) if h.strip()]


def _cache_control_refusal(response: HttpResponseBase) -> str | None:
    if not response.has_header("Cache-Control"):
        return None
    if getattr(response, "_freshcache_cache_control", False):
        return None  # set by an inner cache_page for browsers, not by the view
    for directive in cc_delim_re.split(response["Cache-Control"]):
        name, _, value = directive.strip().lower().partition("=")
        if name in _REFUSED_CACHE_CONTROL:
            return f"Cache-Control: {name}"
        if name in ("max-age", "s-maxage") and value.strip().strip('"') == "0":
            return f"Cache-Control: {name}=0"
    return None


def page_from_response(
    request: HttpRequest,
    response: HttpResponseBase,
    guard: Guard,
    statuses: tuple[int, ...],
) -> Page | str:
    """Return the storable form of ``response``, or why it must not be stored."""
    if response.streaming:
        return "streaming response"  # its body is read after the page's computation ended
    if isinstance(response, SimpleTemplateResponse) and not response.is_rendered:
        return "template response not rendered inside the page"
    if response.status_code not in statuses or response.status_code >= 500:
        return f"status {response.status_code}"
    assert isinstance(response, HttpResponse)
    refusal = _cache_control_refusal(response)
    if refusal:
        return refusal
    if "*" in vary_headers(response):
        return "Vary: *"
    if response.has_header("Set-Cookie"):
        return "sets a cookie (a raw Set-Cookie header)"
    attributes = carry.response_attributes(response)
    if isinstance(attributes, str):
        return attributes
    secret = placeholders.csrf_secret(request)
    csrf_cookie = False
    for name, morsel in response.cookies.items():
        if (
            name == settings.CSRF_COOKIE_NAME
            and secret is not None
            and morsel.value == secret
            and not settings.CSRF_USE_SESSIONS
        ):
            # Set inside the render (@ensure_csrf_cookie, @requires_csrf_token): never stored,
            # set again on every hit (effects "csrf_cookie").
            csrf_cookie = True
            continue
        return f"sets cookie {name!r}"
    headers = _stored_headers(response)
    body = response.content
    # Headers and carried attributes are served as they are: no per-request value may be in
    # them (a middleware above may turn an attribute into a header).
    header_bytes = "\n".join(f"{k}: {v}" for k, v in headers).encode("utf-8", "surrogatepass")
    header_bytes += b"\n" + json.dumps(attributes).encode("utf-8", "surrogatepass")

    # Cut per-request bits into slots: CSRF tokens, then the markers of custom placeholders.
    cuts: list[tuple[int, int, str]] = []
    if secret is not None:
        if placeholders.contains_csrf_secret(header_bytes, secret):
            return "a CSRF token in a response header"
        cuts += [(s, e, placeholders.CSRF) for s, e in placeholders.find_csrf_tokens(body, secret)]
        if secret.encode() in body:
            return "the CSRF secret itself in the body"
    if guard.csrf_used and not cuts and not csrf_cookie:
        return "get_token() was called but its token is not in the body"
    nonce = carry.csp_nonce(request)
    if nonce:
        if nonce.encode() in header_bytes:
            return "the CSP nonce in a response header or attribute set below the cache"
        found = _find(body, nonce.encode())
        if (not found and guard.effects.get("csp_nonce")) or carry.nonce_transformed(body, nonce):
            # Printed in another form (escaped, encoded…) than as is: the stored body would
            # keep this request's nonce under the next request's header.
            return "the CSP nonce is in the body in a form other than as printed"
        cuts += [(s, s + len(nonce), placeholders.CSP_NONCE) for s in found]
    for marker, name in guard.markers.items():
        encoded = marker.encode()
        if encoded in header_bytes:
            return f"placeholder {name!r} in a response header"
        cuts += [(s, s + len(encoded), name) for s in _find(body, encoded)]
    cuts.sort()
    parts, slots, pos, removed = [], [], 0, 0
    for start, end, name in cuts:
        if start < pos:  # overlapping matches cannot happen with tokens and markers; be safe
            return "overlapping placeholders"
        parts.append(body[pos:start])
        slots.append((start - removed, name))
        removed += end - start
        pos = end
    parts.append(body[pos:])
    stored = b"".join(parts)
    return Page(
        status=response.status_code,
        headers=headers,
        body=stored,
        slots=slots,
        absent=sorted(guard.absent),
        csrf_cookie=csrf_cookie or any(n == placeholders.CSRF for _, n in slots),
        digest=_digest(stored, slots),
        attributes=attributes,
        effects=dict(guard.effects, csrf_cookie=True) if csrf_cookie else dict(guard.effects),
    )


def _find(body: bytes, text: bytes) -> list[int]:
    """The offsets of every (non-overlapping) occurrence of ``text`` in ``body``."""
    found, start = [], body.find(text)
    while start != -1:
        found.append(start)
        start = body.find(text, start + len(text))
    return found


def etag_for(request: HttpRequest | None, page: Page) -> str | None:
    """Return the ETag of ``page`` as served to ``request``, or ``None`` if it cannot have one.

    A page without slots has a strong ETag (its bytes are the same for everybody). A page with
    slots has a weak one that also covers what its slots hold for this client (the identity of
    its CSRF secret, not the secret): the bytes differ per response (tokens are masked anew)
    but are equivalent for that client. ``request`` may be ``None`` for a page without slots.
    """
    own = [value for name, value in page.headers if name.lower() == "etag"]
    if own:
        return own[0]  # the view's own, as an uncached render would send it
    if ("meta", "HTTP_IF_NONE_MATCH") in page.absent:
        # The view answers conditional requests itself (@condition, @last_modified): requests
        # with a validator are rendered, so one of ours would never be answered with a 304,
        # while the one ConditionalGetMiddleware computes without us would.
        return None
    names = {name for _, name in page.slots}
    if not names:
        return f'"{page.digest}"'
    if request is None:
        raise ValueError("the ETag of a page with slots depends on the request")
    extra = placeholders.validator(request, names)
    if extra is None:
        return None
    tail = hashlib.blake2b(extra.encode(), digest_size=8).hexdigest()
    return f'W/"{page.digest}-{tail}"'


def covering_tags(etag: str, tags: frozenset[str]) -> str:
    """``etag`` made to cover ``tags`` too (an edge keeps a copy's keys on a 304: Akamai, "A 304
    response doesn't update the cache tags"; so a render with the same bytes and other tags must
    not match the copy's ETag). ``"d"`` → ``"d-t<hash>"``, ``W/"d-x"`` → ``W/"d-x-t<hash>"``."""
    digest = hashlib.blake2b("\n".join(sorted(tags)).encode(), digest_size=8).hexdigest()
    return f'{etag[:-1]}-t{digest}"'


def _served(page: Page) -> _Served:
    served = page.served
    if served is None:
        content_types = [v for k, v in page.headers if k.lower() == "content-type"]
        per_request = bool(page.slots)
        served = page.served = _Served(
            cls=carry.response_class(page.attributes),
            # Only a single one: several would all be set, as stored, by the loop.
            content_type=content_types[0] if len(content_types) == 1 else None,
            headers=tuple(
                (k, v)
                for k, v in page.headers
                if not (len(content_types) == 1 and k.lower() == "content-type")
            ),
            etag=None if per_request else etag_for(None, page),
            per_request=per_request,
        )
    return served


def response_from_page(request: HttpRequest, page: Page) -> HttpResponse:
    """Build the response for a hit: the stored page with its slots filled for ``request``, its
    response attributes, and its effects on the request done again (see ``carry``)."""
    served = _served(page)
    cache: dict[str, str] = {}
    if page.effects:
        carry.apply_effects(request, page.effects)
        if page.effects.get("csrf_cookie"):
            carry.csrf_request(request)
    if page.csrf_cookie:
        # Exactly what an uncached render of {% csrf_token %} does: CsrfViewMiddleware then
        # sets (or renews) the CSRF cookie on the way out.
        placeholders.fill(request, placeholders.CSRF, cache)
    if page.slots:
        out, pos = [], 0
        for offset, name in page.slots:
            out.append(page.body[pos:offset])
            out.append(placeholders.fill(request, name, cache).encode())
            pos = offset
        out.append(page.body[pos:])
        body = b"".join(out)
    else:
        body = page.body
    response = carry.new_response(
        page.attributes, body, page.status, cls=served.cls, content_type=served.content_type
    )
    for name, value in served.headers:
        # The view set a length: the filled slots may have changed it.
        response[name] = str(len(body)) if name.lower() == "content-length" else value
    if page.effects.get("csrf_cookie"):
        carry.set_csrf_cookie(request, response)
    etag = etag_for(request, page) if served.per_request else served.etag
    if etag is not None and not response.has_header("ETag"):
        response["ETag"] = etag
    return response


def not_modified(request: HttpRequest, response: HttpResponseBase, page: Page) -> HttpResponseBase:
    """Return the ``304`` standing for ``response`` if the client's ``If-None-Match`` matches its
    ETag, else ``response``.

    Built by Django's ``get_conditional_response``, so the 304 repeats what RFC 9110 §15.4.5
    says it must (``Cache-Control``, ``Content-Location``, ``Date``, ``ETag``, ``Expires``,
    ``Last-Modified``, ``Vary``) and keeps the response's cookies; the carried response
    attributes are set on it too, so the middleware above treats it as it treats the page.
    """
    if not isinstance(response, HttpResponse) or not request.META.get("HTTP_IF_NONE_MATCH"):
        return response  # checked first: most requests carry no validator
    etag = response.get("ETag") if response.has_header("ETag") else None
    if not etag:
        return response
    names = {name for _, name in page.slots}
    try:
        if names and placeholders.validator(request, names) is None:
            # Its slots hold what no validator vouches for (a CSP nonce): even under the
            # view's own ETag, a 304 would keep an earlier response's per-request text.
            return response
        result = get_conditional_response(request, etag=etag, response=response)
    except Exception:  # a validator of your own that raises: the full page, never a 500
        logger.exception("freshcache: could not answer a conditional request")
        return response
    if not isinstance(result, HttpResponseNotModified):
        return response  # If-Match and friends are the view's business, as without a cache
    carry.restore_attributes(result, page.attributes, marks_only=True)
    return result


def fill_markers(request: HttpRequest, body: bytes, guard: Guard) -> bytes:
    """Replace ``guard``'s placeholder markers in ``body`` with their text for ``request``."""
    for marker, name in guard.markers.items():
        if marker.encode() in body:
            text = placeholders.placeholder(request, name)
            body = body.replace(marker.encode(), text.encode())
    return body


def replay_conditions(request: HttpRequest, page: Page) -> None:
    """Tell enclosing guards (a page around a fragment hit) what this value assumed absent."""
    record_absent(request, page.absent)
