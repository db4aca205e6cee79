"""Edge keys: how a tag is named in a surrogate-key header, and which keys a bump must purge.

One encoding serves every edge (Fastly, Cloudflare, Varnish xkey, Akamai) and both directions: the
header that labels a cached page and, later, the purge that a bump of a tag sends (issue 12 item
2). A purge of tag ``T`` names :func:`purge_keys` ``(T)``; a page carrying ``T`` is labelled with
:func:`edge_key` ``(T)`` or, when its header would not fit, with one of ``T``'s roll-ups
(``rollup.py``). Both sides compute from the tag string alone, so they agree in every process
and after every restart.

**The key of a tag** (:func:`edge_key`) uses only ``A-Z a-z 0-9 . _ -`` plus ``~`` as an escape:
every other byte of the tag's UTF-8 form becomes ``~XX`` (two upper-case hex digits), so
``blog.post:7`` is ``blog.post~3A7`` and ``blog.comment?post_id=7`` is
``blog.comment~3Fpost_id~3D7``. That alphabet is the intersection of what the four edges accept:
Akamai refuses ``: ? = * / @ , ;``, spaces and brackets in a tag (its "Cache tag requirements",
https://techdocs.akamai.com/purge-cache/docs/purge-content-cache-tag); Fastly and Varnish split
their headers on spaces (and xkey on commas too), Cloudflare and Akamai on commas. The alphabet
is also safe unquoted in a URL path (Fastly's purge API takes the key in the path), a JSON
string, a VCL string and a shell argument.

Keys are at most :data:`KEY_MAX_LENGTH` (128) characters: Akamai's limit, the smallest of the
four (a longer Akamai tag is not purged, without an error). A tag whose escaped form is longer
keeps a readable head and ends in ``~h`` and a 128-bit BLAKE2b digest of the whole tag.

**Injective**: an escaped form never contains ``~`` followed by anything but an upper-case hex
digit, so it never contains ``~h`` (every digest form does) nor ``~all`` (the catch-all key).
Two different tags therefore get different keys, except two long tags whose digests collide
(2^-128). Cloudflare compares tags case-insensitively: there ``Post`` and ``post`` name one tag,
which can only make a purge remove more, never less.

**Roll-ups** (:func:`parent`): a tag stands for a set of rows, and a coarser tag for a superset.

* ``blog.comment?post_id=7`` → ``blog.comment?post_id=*`` (every value of that column; writes
  already bump this wildcard where they do not know the values) → ``blog.comment``;
* ``blog.post:7`` (a row) → ``blog.post`` (its table);
* a table, or a tag of no such shape (``weather``, a digest ``#…``) → only the catch-all key
  :data:`CATCH_ALL_KEY`, which every bump purges.

The roll-up is read off the tag's text, so it applies to hand-written tags of the same shape
too (``weather:london`` → ``weather``): a bump of ``weather:london`` purges ``weather``, which is
only ever more than needed. Freshness rests on one property, tested with Hypothesis: for every
tag ``T`` of a page, ``purge_keys(T)`` meets the keys the page was labelled with.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

__all__ = [
    "CATCH_ALL_KEY",
    "KEY_MAX_LENGTH",
    "ancestors",
    "edge_key",
    "parent",
    "purge_keys",
]

#: The longest key (characters; keys are ASCII, so bytes too). Akamai: "A single tag can't
#: exceed 128 characters" (https://techdocs.akamai.com/purge-cache/docs/purge-content-cache-tag);
#: Fastly allows 1,024 bytes, Cloudflare and Varnish xkey set no per-key limit.
KEY_MAX_LENGTH = 128

#: The key every bump purges: a page whose tags cannot fit its edge's header even rolled up to
#: their tables carries this one key instead (purged by any write: fresh, rarely cached long).
CATCH_ALL_KEY = "~all"

_PLAIN = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_ESCAPES = tuple(chr(b) if b in _PLAIN else f"~{b:02X}" for b in range(256))
_DIGEST_LENGTH = 2 + 32  # "~h" + 16 bytes in hex
#: Characters of the escaped form kept before the digest of a long tag (for people reading logs).
_HEAD_LENGTH = KEY_MAX_LENGTH - _DIGEST_LENGTH


@lru_cache(maxsize=8192)
def edge_key(tag: str) -> str:
    """Return the key that names ``tag`` in every edge's header and purge (see the module doc).

    >>> edge_key("blog.post:7")
    'blog.post~3A7'
    """
    data = tag.encode("utf-8", "surrogatepass")
    parts = [_ESCAPES[b] for b in data]
    escaped = "".join(parts)
    if len(escaped) <= KEY_MAX_LENGTH:
        return escaped
    head: list[str] = []
    length = 0
    for part in parts:  # cut between escapes, never inside one
        if length + len(part) > _HEAD_LENGTH:
            break
        head.append(part)
        length += len(part)
    digest = hashlib.blake2b(data, digest_size=16, person=b"freshcache-edge").hexdigest()
    return "".join(head) + "~h" + digest


def parent(tag: str) -> str | None:
    """The next coarser tag ``tag`` rolls up to, or ``None`` for a table or a free-form tag
    (those roll up to :data:`CATCH_ALL_KEY` only).

    >>> parent("blog.comment?post_id=7"), parent("blog.comment?post_id=*"), parent("blog.post:7")
    ('blog.comment?post_id=*', 'blog.comment', 'blog.post')
    """
    cut = _first_separator(tag)
    if cut <= 0:  # no separator, or nothing before it: no table to name
        return None
    table = tag[:cut]
    if tag[cut] == "?":
        column, equals, value = tag[cut + 1 :].partition("=")
        if equals and column and value != "*":
            return f"{table}?{column}=*"
    return table


def _first_separator(tag: str) -> int:
    colon = tag.find(":")
    query = tag.find("?")
    if colon < 0:
        return query
    if query < 0:
        return colon
    return min(colon, query)


def ancestors(tag: str) -> tuple[str, ...]:
    """``tag``'s roll-ups, finest first (at most two: a column wildcard, then a table)."""
    found: list[str] = []
    current = parent(tag)
    while current is not None and len(found) < 3:
        found.append(current)
        current = parent(current)
    return tuple(found)


@lru_cache(maxsize=8192)
def purge_keys(tag: str) -> frozenset[str]:
    """The keys to purge when ``tag`` is bumped: its own key, the keys of its roll-ups (a page
    labelled with a roll-up of ``tag`` must go too) and :data:`CATCH_ALL_KEY`.

    >>> sorted(purge_keys("blog.post:7"))
    ['blog.post', 'blog.post~3A7', '~all']
    """
    return frozenset({edge_key(tag), *map(edge_key, ancestors(tag)), CATCH_ALL_KEY})
