"""Cached template fragments, shared by ``{% cachefresh %}`` and the Jinja2 extension.

A fragment is keyed by its name, the template it is in, and the values given to it; it depends
on everything read while it renders (tags bubble from inner fragments to outer ones and to the
page: Russian-doll caching) and, conservatively, on:

* the model instances among those values and in the template context (a fragment may show
  ``post.title`` without any query: the instance was loaded before the fragment began), with
  the instances they hold through ``select_related``;
* the tags the enclosing scope had already collected when the fragment began (whatever the
  page read to arrive here).

While a fragment renders, the request is guarded with a key that covers nothing: a fragment that
reads a cookie, a header, a query parameter or the user is served but not stored. Pass such
values as arguments instead (``{% cachefresh "list" request.GET.page %}``). CSRF tokens and
placeholders inside a fragment are cut into slots exactly as in pages.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import models
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject, empty

from .. import events
from ..conf import get_settings
from ..core import fetch
from ..inputs import note_inputs
from ..scope import add_tags, current_scope, mark_uncacheable
from . import carry, placeholders
from .guard import Guard, conditions_violated, guarded, raw, record_absent
from .guard.identity import _check_user, _evaluate, _GuardedMessages, _GuardedUser
from .keys import _digest, frame

__all__ = ["Fragment", "FragmentCodec", "render_fragment"]

@dataclass
class Fragment:
    text: str
    slots: list[tuple[int, str]] = field(default_factory=list)
    absent: list[tuple[str, str]] = field(default_factory=list)
    #: What the render did to the request (``carry.effects_since``), done again on each hit.
    effects: dict[str, Any] = field(default_factory=dict)


class FragmentCodec:
    """``Fragment`` <-> JSON bytes (no pickle)."""

    def dumps(self, value: Fragment) -> bytes:
        return json.dumps(
            {
                "v": 2,
                "text": value.text,
                "slots": value.slots,
                "absent": value.absent,
                "effects": value.effects,
            },
            separators=(",", ":"),
        ).encode("utf-8", "surrogatepass")

    def loads(self, data: bytes) -> Fragment:
        raw = json.loads(data)
        if not isinstance(raw, dict) or raw.get("v") != 2 or not isinstance(raw["text"], str):
            raise ValueError("not a freshcache fragment")
        slots = [(int(o), str(n)) for o, n in raw["slots"]]
        if any(not 0 <= o <= len(raw["text"]) for o, _ in slots):
            raise ValueError("slot outside the text")
        effects = raw["effects"]
        if not isinstance(effects, dict):
            raise ValueError("bad effects")
        absent = [(str(s), str(n)) for s, n in raw["absent"]]
        return Fragment(raw["text"], slots, absent, effects)


CODEC = FragmentCodec()


def _encode(value: Any) -> str:
    if isinstance(value, models.Model):
        return f"m:{value._meta.label_lower}:{value._state.db}:{value.pk!r}"
    if value is None or isinstance(value, bool | int | float):
        return f"{type(value).__name__}:{value!r}"
    return f"{type(value).__module__}.{type(value).__qualname__}:{value}"


def fragment_key(name: str, values: Iterable[Any], origin: str) -> str:
    return "freshcache.fragment:" + _digest(frame(["v1", origin, name, *map(_encode, values)]))


def _cut(
    text: str, guard: Guard, request: HttpRequest, effects: dict[str, Any]
) -> Fragment | str:
    cuts: list[tuple[int, int, str]] = []
    secret = placeholders.csrf_secret(request)
    if secret is not None:
        encoded = text.encode("utf-8", "surrogatepass")
        if secret.encode() in encoded:
            return "the CSRF secret itself in a fragment"
        for start, end in placeholders.find_csrf_tokens(encoded, secret):
            # Tokens are ASCII, so byte offsets of the ASCII prefix map to str offsets.
            prefix = encoded[:start].decode("utf-8", "surrogatepass")
            cuts.append((len(prefix), len(prefix) + end - start, placeholders.CSRF))
    if guard.csrf_used and not cuts:
        return "get_token() was called but its token is not in the fragment"
    nonce = carry.csp_nonce(request)
    encoded_text = text.encode("utf-8", "surrogatepass")
    if nonce and (
        (nonce not in text and effects.get("csp_nonce"))
        or carry.nonce_transformed(encoded_text, nonce)
    ):
        return "the CSP nonce is in the fragment in a form other than as printed"
    if nonce:
        start = text.find(nonce)
        while start != -1:
            cuts.append((start, start + len(nonce), placeholders.CSP_NONCE))
            start = text.find(nonce, start + len(nonce))
    for marker, name in guard.markers.items():
        start = text.find(marker)
        while start != -1:
            cuts.append((start, start + len(marker), name))
            start = text.find(marker, start + len(marker))
    cuts.sort()
    out, slots, pos, removed = [], [], 0, 0
    for start, end, name in cuts:
        out.append(text[pos:start])
        slots.append((start - removed, name))
        removed += end - start
        pos = end
    out.append(text[pos:])
    return Fragment("".join(out), slots, sorted(guard.absent), effects)


def _captured(values: Mapping[Any, Any], request: HttpRequest) -> dict[Any, tuple[str, Any]]:
    """Context values captured from the request before the fragment's guard was installed: the
    auth context processor's ``user`` and ``perms`` and the messages one's ``messages``, when
    already evaluated (an unevaluated lazy user reads the guarded session when it loads, and is
    seen). Reading them would not go through the guard. ``{name: (kind, value)}``."""
    found: dict[Any, tuple[str, Any]] = {}
    real = raw(request, "user") if "user" in vars(request) else None
    users = set()
    if real is not None and type(real) is not _GuardedUser:
        if issubclass(type(real), SimpleLazyObject):
            wrapped = real.__dict__.get("_wrapped", empty)
            if wrapped is not empty:
                users |= {id(real), id(wrapped)}
        else:
            users.add(id(real))
    cached = request.__dict__.get("_acached_user")  # what request.auser() resolved
    if cached is not None:
        users.add(id(cached))
    storage = request.__dict__.get("_messages")
    for key, value in values.items():
        if id(value) in users:
            found[key] = ("user", value)
        elif type(value).__name__ == "PermWrapper" and id(getattr(value, "user", None)) in users:
            found[key] = ("perms", value)
        elif storage is not None and value is storage and hasattr(storage, "_loaded_data"):
            found[key] = ("messages", value)
    return found


def guarded_values(values: Mapping[Any, Any], request: HttpRequest) -> dict[Any, Any]:
    """Replacements for the :func:`_captured` context values, to push while a fragment renders
    under its guard (Django templates): the guarded user, a ``PermWrapper`` of it, the guarded
    messages."""
    out: dict[Any, Any] = {}
    for key, (kind, value) in _captured(values, request).items():
        user = request.__dict__.get("user")
        if kind == "user" and type(user) is _GuardedUser:
            out[key] = user
        elif kind == "perms" and type(user) is _GuardedUser:
            out[key] = type(value)(user)
        elif kind == "messages":
            out[key] = _GuardedMessages(request, value)
    return out


def read_captured(values: Mapping[Any, Any], request: HttpRequest) -> None:
    """Count the :func:`_captured` context values as read (Jinja2, whose context cannot be
    changed): a logged-in user or present messages then refuse storing the fragment."""
    for kind, value in _captured(values, request).values():
        if kind == "messages":
            _GuardedMessages(request, value)._fc_read()
        elif kind == "user":
            _check_user(request, _evaluate(value))
        else:
            _check_user(request, value.user)


def _filled(fragment: Fragment, request: HttpRequest | None) -> str:
    if not fragment.slots:
        return fragment.text
    out, pos = [], 0
    for offset, name in fragment.slots:
        out.append(fragment.text[pos:offset])
        # Inside a cached page this is the page's own marker (cut again there), else the value.
        out.append(placeholders.placeholder(request, name))
        pos = offset
    out.append(fragment.text[pos:])
    return "".join(out)


def render_fragment(
    name: str,
    values: list[Any],
    origin: str,
    request: HttpRequest | None,
    render: Callable[[], str],
    context_values: Iterable[Any] = (),
    store: str | None = None,
) -> str:
    """Return the fragment's text: from the cache if still valid, else ``render()``."""
    if not get_settings().enabled:
        _settle(name, "bypass", "disabled")
        return render()  # as without freshcache: no guard, no proxies
    rendered: dict[str, str] = {}

    def compute() -> Fragment | None:
        scope = current_scope()  # the fragment's own
        if scope is not None and scope.parent is not None:
            add_tags(set(scope.parent.tags))  # what the page read to arrive here
        note_inputs(values)
        note_inputs(context_values)
        if request is None:
            rendered["text"] = render()
            return Fragment(rendered["text"])
        guard = Guard(request)
        if str(raw(request, "method")) not in ("GET", "HEAD"):
            # request.POST, FILES and the body are not guarded: what a form's render shows
            # from them must not reach a GET.
            mark_uncacheable(f"a fragment rendered for a {raw(request, 'method')} request")
        before = carry.snapshot(request)
        if carry.has_csp_nonce(request):
            # `{% if csp_nonce %}` (Django 6.0) tells whether something before generated it.
            guard.absent.add(("nonce", "generated" if before["csp_nonce"] else "ungenerated"))
        try:
            with guarded(request, guard):
                text = render()
        finally:  # also puts back the flags the snapshot cleared, if the render raised
            effects = carry.effects_since(request, before)
        result = _cut(text, guard, request, effects)
        # What this request sees: the markers replaced by the enclosing page's own markers,
        # or by their values outside a cached page.
        for marker, slot in guard.markers.items():
            text = text.replace(marker, placeholders.placeholder(request, slot))
        rendered["text"] = text
        if isinstance(result, str):
            mark_uncacheable(result)
            return None
        return result

    key = fragment_key(name, values, origin)
    outcome = fetch(key, compute, store=store, codec=CODEC, kind="fragment", name=name)
    if not outcome.hit:
        _settle(name, "miss")
        return rendered["text"]
    fragment = outcome.value
    if fragment is None:
        _settle(name, "bypass", "bad entry")
        return render()
    if request is not None:
        violated = conditions_violated(request, fragment.absent)
        if violated:
            _settle(name, "bypass", violated)
            return render()
        record_absent(request, fragment.absent)
        carry.apply_effects(request, fragment.effects)
    _settle(name, "hit")
    return _filled(fragment, request)


def _settle(name: str, state: str, reason: str | None = None) -> None:
    if events.listening:
        events.settle("fragment", name, state, reason)
