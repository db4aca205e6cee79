"""Entry payloads: a value as bytes (a codec), signed for shared stores, and back.

A payload is ``FORMAT`` + HMAC-SHA256 + the codec's bytes in a shared store (``database://``,
``redis://``: another process, or anyone with write access to the store, could have written
it), ``FORMAT`` + the bytes in a store private to the process. The MAC covers the entry's key, so
a payload cannot be replayed under another key; pickle only ever loads what verified.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import pickle
import threading
from collections import OrderedDict
from functools import lru_cache
from typing import Any, Protocol

from django.conf import settings as django_settings

from . import counters
from .stores import Hit, Store

__all__ = ["FORMAT", "PICKLE", "Codec", "PickleCodec", "store_key"]

logger = logging.getLogger("freshcache")

#: Bumped whenever the payload layout changes: older payloads then read as misses.
FORMAT = b"fc1"
_MAC_SIZE = 32


class Codec(Protocol):
    """Turns a value into bytes and back. ``loads`` may raise on bad data (a miss).

    A codec whose decoded values nobody mutates may say so with a class attribute
    ``shareable = True``: one decoded value then serves every hit on a near cache's entry
    (``Hit.memo``), with no MAC check or decoding per hit. The page codec does; pickle does not
    (a caller may change the list it got back). A shareable codec may also have
    ``memo_cost(value, payload) -> int``: the bytes a decoded value and its payload hold in
    memory (``_Decoded``; by default twice the payload).
    """

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class PickleCodec:
    """The default codec for ``@cached`` results (model instances, lists, dicts...)."""

    def dumps(self, value: Any) -> bytes:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)  # only ever after the HMAC was verified


PICKLE = PickleCodec()


@lru_cache(maxsize=4)
def _mac_key(secret: str) -> bytes:
    return hashlib.blake2b(secret.encode(), person=b"freshcache-mac", digest_size=32).digest()


def _seal(data: bytes, key: str) -> bytes:
    # The MAC covers the entry key too, so a payload cannot be replayed under another key.
    mac = hmac.new(_mac_key(django_settings.SECRET_KEY), key.encode() + b"\0" + data, "sha256")
    return FORMAT + mac.digest() + data


def _open(payload: bytes, key: str) -> bytes | None:
    if not payload.startswith(FORMAT) or len(payload) < len(FORMAT) + _MAC_SIZE:
        return None
    mac = payload[len(FORMAT) : len(FORMAT) + _MAC_SIZE]
    data = payload[len(FORMAT) + _MAC_SIZE :]
    expected = hmac.new(
        _mac_key(django_settings.SECRET_KEY), key.encode() + b"\0" + data, "sha256"
    ).digest()
    return data if hmac.compare_digest(mac, expected) else None


def store_key(key: str) -> str:
    """The fixed-length name under which ``key`` is kept in a store."""
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=20).hexdigest()


#: The bytes kept for the decoded values of recent hits of shareable codecs (pages), each
#: counted as its codec's ``memo_cost`` (else twice its payload). A value over a sixteenth of it
#: is not kept.
DECODED_BYTES = 4 * 1024 * 1024


class _Decoded:
    """Recent hits' values by entry key, with the exact payload each was decoded from.

    A store without a near cache hands out a new ``Hit`` on every hit, so each would verify the
    MAC and decode again (and a page would work out its response parts again, ``Page.served``).
    When the store answers a key with the same bytes as last time, under the same codec and
    ``SECRET_KEY``, the value decoded then is the value these bytes decode to: it is reused.
    Freshness is not this memo's business: the store decided that the entry is valid, and only
    identical bytes (compared in full) are ever reused. Least recently used first out."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.size = 0
        #: key -> (payload, codec, MAC key, value, bytes counted)
        self.entries: OrderedDict[str, tuple[bytes, Codec, bytes | None, Any, int]] = (
            OrderedDict()
        )
        self.lock = threading.Lock()

    def get(self, key: str, payload: bytes, codec: Codec, mac: bytes | None) -> tuple[bool, Any]:
        with self.lock:
            found = self.entries.get(key)
            if found is None or found[1] is not codec or found[2] is not mac:
                return False, None
            if found[0] != payload:
                return False, None
            self.entries.move_to_end(key)
            return True, found[3]

    def put(self, key: str, payload: bytes, codec: Codec, mac: bytes | None, value: Any) -> None:
        measure = getattr(codec, "memo_cost", None)
        held = measure(value, payload) if measure is not None else 2 * len(payload)
        cost = held + len(key) + 200
        with self.lock:
            old = self.entries.pop(key, None)
            if old is not None:
                self.size -= old[4]
            if cost * 16 > self.budget:
                return
            self.entries[key] = (payload, codec, mac, value, cost)
            self.size += cost
            while self.size > self.budget:
                _, gone = self.entries.popitem(last=False)
                self.size -= gone[4]


_decoded = _Decoded(DECODED_BYTES)


def _forked() -> None:  # a lock held by another thread of the parent would never be released
    global _decoded
    _decoded = _Decoded(DECODED_BYTES)


os.register_at_fork(after_in_child=_forked)


def _decode(store: Store, hit: Hit, key: str, codec: Codec) -> tuple[bool, Any]:
    shareable = getattr(codec, "shareable", False)
    memo = hit.memo if shareable else None
    if memo is not None:
        # A near cache's entry (the same Hit on every hit from memory): decoded and verified
        # once. The entry's key is the hash of ``key``; the codec and ``key`` are checked too.
        found = memo.get("value")
        if found is not None and found[0] is codec and found[1] == key:
            return True, found[2]
    recent = shareable and memo is None
    mac = _mac_key(django_settings.SECRET_KEY) if recent and store.shared else None
    if recent:
        reused, value = _decoded.get(key, hit.payload, codec, mac)
        if reused:
            return True, value
    data = _open(hit.payload, key) if store.shared else _unsigned(hit.payload)
    if data is None:
        counters.incr("corrupt_entries")
        return False, None
    try:
        value = codec.loads(data)
        if memo is not None:
            memo["value"] = (codec, key, value)
        elif recent:
            _decoded.put(key, hit.payload, codec, mac, value)
        return True, value
    except Exception:  # a payload that verified but does not decode (an old class layout)
        counters.incr("corrupt_entries")
        logger.debug("freshcache: undecodable entry %s", key, exc_info=True)
        return False, None


def _unsigned(payload: bytes) -> bytes | None:
    return payload[len(FORMAT) :] if payload.startswith(FORMAT) else None


def _encode(store: Store, value: Any, key: str, codec: Codec) -> bytes:
    data = codec.dumps(value)
    return _seal(data, key) if store.shared else FORMAT + data
