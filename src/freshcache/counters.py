"""Per-process counters: what the cache did since the process started (or was reset)."""

from __future__ import annotations

import threading
from collections import Counter

__all__ = ["FIELDS", "incr", "reset", "snapshot"]

#: Every counter, always present in :func:`freshcache.stats` even when zero.
FIELDS = (
    "hits",
    "misses",
    "stores",
    "stores_skipped_race",
    "stores_skipped_uncacheable",
    "stores_skipped_too_large",
    "bypasses",
    "bumps",
    "bump_failures",
    "store_errors",
    "corrupt_entries",
    "lease_waits",
    "lease_timeouts",
    "shadow_matches",
    "shadow_mismatches",
    "shadow_skipped",
    "shadow_dropped",
    "shadow_errors",
)

_lock = threading.Lock()
_counts: Counter[str] = Counter()


def incr(name: str, n: int = 1) -> None:
    with _lock:
        _counts[name] += n


def snapshot() -> dict[str, int]:
    with _lock:
        return {name: _counts[name] for name in FIELDS}


def reset() -> None:
    with _lock:
        _counts.clear()
