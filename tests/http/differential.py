"""Helpers of the differential test (issue 10): send a request, see a response, compare two.

A response is turned into a :class:`Seen`: status, reason phrase, body (decompressed), every
header but ``Date``, every cookie morsel, and the response attributes Django's middleware reads.
Per-request values are checked, then replaced by a stand-in, so two responses compare equal
when they differ only by them:

- a masked CSRF token must unmask to the CSRF secret of that response (the ``csrftoken`` cookie
  sent, or set) and becomes ``<csrf>``; a secret the response made up becomes ``<new secret>``;
- a CSP nonce in the body must be the nonce of that response's CSP header; both become
  ``<nonce>``;
- ``Expires`` (header or cookie attribute) becomes its distance from now, in minutes.

:func:`compare` lists every difference, naming the header, cookie or attribute with both values.
"""

from __future__ import annotations

import contextvars
import email.utils
import gzip
import re
import time
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.middleware.csrf import _unmask_cipher_token
from django.template.response import TemplateResponse
from django.test import AsyncClient, Client

TOKEN = re.compile(rb"(?<![A-Za-z0-9])[A-Za-z0-9]{64}(?![A-Za-z0-9])")
BODY_NONCE = re.compile(rb'nonce="([^"]*)"')
HEADER_NONCE = re.compile(r"'nonce-([^']+)'")
WEAK_SLOTTED = re.compile(r'^W/"([0-9a-f]+)-([0-9a-f]+)"$')
CSP_HEADERS = ("content-security-policy", "content-security-policy-report-only")
#: Response attributes set by decorators for middleware above the view to read.
ATTRIBUTES = ("xframe_options_exempt", "reason_phrase", "charset", "streaming")


class _AsyncClient(AsyncClient):
    """``AsyncClient`` always sends ``host: testserver``: a ``host`` given replaces it."""

    async def request(self, **request: Any) -> Any:
        hosts = [h for h in request["headers"] if h[0] == b"host"]
        if len(hosts) > 1:
            request["headers"] = [h for h in request["headers"] if h[0] != b"host"] + hosts[-1:]
        return await super().request(**request)


def send(
    path: str,
    *,
    is_async: bool,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
) -> Any:
    """One request from a new client (no cookie carried over unless given)."""
    client: Any = _AsyncClient() if is_async else Client()
    for name, value in (cookies or {}).items():
        client.cookies[name] = value
    call = getattr(client, method.lower())
    if is_async:
        # In a copy of the context: each async_to_sync runs in a new thread, where Django's
        # connection handler makes a new context variable; restored into this context, they
        # would pile up and make every later call slower.
        # (A coroutine function of our own: Django 4.2's AsyncClient methods return coroutines
        # without being ones, and asgiref warns about each.)
        async def request(*args: Any, **kwargs: Any) -> Any:
            return await call(*args, **kwargs)

        return contextvars.copy_context().run(
            async_to_sync(request), path, headers=headers or {}
        )
    return call(path, headers=headers or {})


def carried_cookies(response: Any) -> dict[str, str]:
    """The cookies a browser would send back after ``response``."""
    return {name: m.value for name, m in response.cookies.items() if m.value}


@dataclass
class Seen:
    """A response, normalised for comparison. ``problems``: per-request values gone wrong."""

    label: str
    state: str | None
    status: int
    body: bytes
    headers: dict[str, str]
    cookies: dict[str, dict[str, str]]
    attributes: dict[str, Any]
    nonce: str | None = None
    per_request_body: bool = False
    problems: list[str] = field(default_factory=list)


def _relative_date(value: str) -> str:
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return value
    delta = when - time.time()
    if abs(delta) > 2 * 366 * 86400:
        return value  # a fixed date (a deleted cookie's 1970): compared as is
    return f"<now{round(delta / 60):+d}min>"


def _secret(response: Any, sent: dict[str, str]) -> str | None:
    name = settings.CSRF_COOKIE_NAME
    if name in sent:
        return sent[name]
    morsel = response.cookies.get(name)
    return morsel.value if morsel is not None and morsel.value else None


def _tokens(seen: Seen, secret: str | None, check: bool) -> None:
    def cut(match: re.Match[bytes]) -> bytes:
        token = match.group().decode()
        if not check:
            pass
        elif secret is None:
            seen.problems.append(f"{seen.label}: CSRF token {token} but no CSRF secret to check")
        elif _unmask_cipher_token(token) != secret:
            seen.problems.append(
                f"{seen.label}: CSRF token {token} does not unmask to this response's "
                f"secret {secret}"
            )
        seen.per_request_body = True
        return b"<csrf>"

    seen.body = TOKEN.sub(cut, seen.body)


def _nonces(seen: Seen) -> None:
    in_header = {
        n for h in CSP_HEADERS if h in seen.headers for n in HEADER_NONCE.findall(seen.headers[h])
    }
    if len(in_header) > 1:
        seen.problems.append(f"{seen.label}: several CSP nonces in the headers: {in_header}")
    header_nonce = next(iter(in_header), None)
    for h in CSP_HEADERS:
        if h in seen.headers and header_nonce:
            seen.headers[h] = seen.headers[h].replace(header_nonce, "<nonce>")

    def cut(match: re.Match[bytes]) -> bytes:
        nonce = match.group(1).decode()
        if not nonce:
            return match.group()
        if nonce != header_nonce:
            seen.problems.append(
                f"{seen.label}: body nonce {nonce!r} is not the CSP header's "
                f"nonce {header_nonce!r} (header: {seen.headers.get(CSP_HEADERS[0])!r})"
            )
        seen.nonce = nonce
        seen.per_request_body = True
        return b'nonce="<nonce>"'

    seen.body = BODY_NONCE.sub(cut, seen.body)


def _cookies(seen: Seen, response: Any, sent: dict[str, str]) -> None:
    for name, morsel in response.cookies.items():
        entry = {"value": morsel.value}
        entry.update({key: str(morsel[key]) for key in morsel if morsel[key] != ""})
        if "expires" in entry:
            entry["expires"] = _relative_date(entry["expires"])
        if name == settings.CSRF_COOKIE_NAME and morsel.value:
            if not re.fullmatch(r"[A-Za-z0-9]{32}", morsel.value):
                seen.problems.append(f"{seen.label}: CSRF cookie {morsel.value!r} is no secret")
            sent_value = sent.get(name)
            entry["value"] = "<as sent>" if morsel.value == sent_value else "<new secret>"
        seen.cookies[name] = entry


def see(
    label: str, response: Any, sent: dict[str, str], own_etag: bool = False, csrf: bool = True
) -> Seen:
    """``response`` to the request that sent cookies ``sent``, normalised (module docstring).

    ``csrf``: ``CsrfViewMiddleware`` is installed. Without it the CSRF cookie is neither read
    nor set: a token's secret is made up per request and cannot be checked, only masked.
    """
    headers = {name.lower(): value for name, value in response.items()}
    headers.pop("date", None)
    state = headers.pop("x-freshcache", None)
    body = response.content
    if headers.get("content-encoding") == "gzip" and body:
        body = gzip.decompress(body)
        if headers.get("content-length") == str(len(response.content)):
            # Django pads gzip output with random bytes (BREACH): the length is per response.
            headers["content-length"] = "<length of this gzip body>"
    seen = Seen(
        label=label,
        state=None if state is None else state.split(";")[0],
        status=response.status_code,
        body=body,
        headers=headers,
        cookies={},
        attributes={a: getattr(response, a) for a in ATTRIBUTES if hasattr(response, a)},
    )
    seen.attributes.update({k: v for k, v in vars(response).items() if k.startswith("_csp")})
    # A hit of a TemplateResponse is an HttpResponse (documented: only a middleware's
    # process_template_response could tell, and it gets a rendered response on a miss too).
    kind = type(response)
    seen.attributes["class"] = "HttpResponse" if kind is TemplateResponse else kind.__name__
    seen.attributes["X-Freshcache"] = state  # shown in messages, never compared
    _tokens(seen, _secret(response, sent) if csrf else None, check=csrf)
    _nonces(seen)
    _cookies(seen, response, sent)
    if "expires" in headers:
        headers["expires"] = _relative_date(headers["expires"])
    tag = headers.get("etag")
    slotted = None if tag is None else WEAK_SLOTTED.match(tag)
    if slotted and (not csrf or settings.CSRF_COOKIE_NAME not in sent):
        # freshcache's ETag of a page with slots covers this request's new CSRF secret.
        headers["etag"] = f'W/"{slotted.group(1)}-<new secret>"'
    elif tag is not None and not slotted and seen.per_request_body and not own_etag:
        headers["etag"] = "<ETag over a per-request body>"
    return seen


@dataclass(frozen=True)
class Allow:
    """What freshcache may add to the view's own response (M against U)."""

    etag: bool = False  # an ETag of its own (the view set none)
    cache_control: str | None = None  # its BROWSER_CACHE_CONTROL, if the view set none


def _body_diff(a: bytes, b: bytes) -> str:
    pairs = enumerate(zip(a, b, strict=False))
    at = next((i for i, (x, y) in pairs if x != y), min(len(a), len(b)))
    start, end = max(0, at - 40), at + 60
    return f"at byte {at}: {a[start:end]!r} != {b[start:end]!r} (lengths {len(a)}, {len(b)})"


def _show(seen: Seen) -> str:
    return f"{seen.label}[{seen.attributes.get('X-Freshcache')}]"


def compare(a: Seen, b: Seen, allow: Allow = Allow()) -> list[str]:
    """Every difference between ``a`` (the response under test) and ``b`` (its reference)."""
    out: list[str] = []
    who = f"{_show(a)} vs {_show(b)}"
    headers_a, headers_b = dict(a.headers), dict(b.headers)
    if allow.etag:
        headers_a.pop("etag", None)
        headers_b.pop("etag", None)
    ours = allow.cache_control and headers_a.get("cache-control") == allow.cache_control
    if ours and "cache-control" not in headers_b:
        del headers_a["cache-control"]
    if a.status != b.status:
        out.append(f"{who}: status {a.status} != {b.status}")
    if a.body != b.body:
        out.append(f"{who}: body differs: {_body_diff(a.body, b.body)}")
    for name in sorted(set(headers_a) | set(headers_b)):
        va, vb = headers_a.get(name), headers_b.get(name)
        if va != vb:
            out.append(f"{who}: header {name!r}: {va!r} != {vb!r}")
    for name in sorted(set(a.cookies) | set(b.cookies)):
        ca, cb = a.cookies.get(name), b.cookies.get(name)
        if ca is None or cb is None:
            out.append(f"{who}: cookie {name!r} set: {ca!r} != {cb!r}")
            continue
        for key in sorted(set(ca) | set(cb)):
            if ca.get(key) != cb.get(key):
                out.append(f"{who}: cookie {name!r} {key}: {ca.get(key)!r} != {cb.get(key)!r}")
    skip = {"X-Freshcache"} | ({"reason_phrase"} if a.status != b.status else set())
    for key in sorted((set(a.attributes) | set(b.attributes)) - skip):
        va, vb = a.attributes.get(key, "<unset>"), b.attributes.get(key, "<unset>")
        if va != vb:
            out.append(f"{who}: response attribute {key!r}: {va!r} != {vb!r}")
    return out
