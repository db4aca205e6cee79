"""How the database store reads its rows: tag versions and entries' version texts.

Every value read is checked to be one the store could have written (SQLite columns hold any
type; a row may have been edited by hand): anything else is treated as missing.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

__all__ = [
    "HEADER",
    "NONCE",
    "SHIFT",
    "alive",
    "first_sighting",
    "integer",
    "parse",
    "payload",
    "version",
]

#: A stored version is ``seq << SHIFT | nonce``: bumps have nonce 0; a tag seen for the first
#: time gets the current position and a random nonce, so it never looks like a bump to anyone.
SHIFT = 20
NONCE = (1 << SHIFT) - 1
#: The first line of an entry's versions text, with the number of lines after it. Text without
#: it, or with fewer lines (emptied or truncated from outside), would otherwise validate an
#: entry against fewer tags than it depends on.
HEADER = "fc1"


def first_sighting(current: int) -> int:
    return current << SHIFT | (secrets.randbelow(NONCE) + 1)


def integer(value: Any) -> int | None:
    """``value`` if it is an integer (SQLite columns hold any type), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def version(value: Any) -> int | None:
    """A stored tag version, or None when it is not one the store could have written: every
    version is positive (bumps are ``seq << SHIFT`` with seq >= 1; first sightings carry a
    nonce >= 1)."""
    version = integer(value)
    return version if version is not None and version > 0 else None


def digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def parse(text: Any) -> dict[str, int] | None:
    """An entry's recorded versions, or None when the text is not exactly what ``set`` writes:
    ``"fc1 N"``, then N ``"tag\\tversion"`` lines, each version a positive integer as PostgreSQL
    prints it (the lookup compares the text)."""
    if not isinstance(text, str):
        return None
    head, newline, body = text.partition("\n")
    count = head.removeprefix(HEADER + " ")
    if not newline or count == head or not digits(count):
        return None
    lines = body.split("\n") if body else []
    if len(lines) != int(count):
        return None
    out: dict[str, int] = {}
    for line in lines:
        tag, tab, version = line.partition("\t")
        if not tag or not tab or not digits(version) or version.startswith("0"):
            return None
        out[tag] = int(version)
    return out if len(out) == len(lines) else None


def payload(value: Any) -> bytes | None:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return None


def alive(expires: Any) -> bool:
    """True if an entry with this expiry may be served (garbage, NaN or past: no)."""
    if expires is None:
        return True
    if not isinstance(expires, (int, float)) or isinstance(expires, bool):
        return False
    return expires > time.time()
