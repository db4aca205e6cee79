"""What the dashboard shows, read from the journal (``freshcache.journal``)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .. import journal
from ..stores import StoreUnavailable

__all__ = ["Board", "gather"]

#: Rows per table.
TOP = 15


@dataclass
class Board:
    """One reading of the journal, ready for the template."""

    at: float
    hits: int = 0
    requests: int = 0
    pages: list[dict[str, Any]] = field(default_factory=list)
    others: list[dict[str, Any]] = field(default_factory=list)
    never_stored: list[dict[str, Any]] = field(default_factory=list)
    tags: list[dict[str, Any]] = field(default_factory=list)
    recent: list[dict[str, Any]] = field(default_factory=list)
    slowest: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def hit_ratio(self) -> float | None:
        return self.hits / self.requests if self.requests else None


def _row(stat: journal.Stat) -> dict[str, Any]:
    computed = stat.misses + stat.bypasses
    return {
        "kind": stat.kind,
        "name": stat.name,
        "requests": stat.requests,
        "hits": stat.hits,
        "misses": stat.misses,
        "stored": stat.stored,
        "bypasses": stat.bypasses,
        "percent": None if stat.hit_ratio is None else round(stat.hit_ratio * 100, 1),
        "mean_ms": round(stat.seconds / computed * 1000, 1) if computed else None,
        "reason": max(stat.reasons, key=stat.reasons.__getitem__) if stat.reasons else "",
    }


def gather() -> Board:
    """Read the default store's journal (this process's numbers flushed first). A store that
    cannot answer gives an empty board with ``error`` set, never an exception."""
    board = Board(at=time.time())
    try:
        journal.flush()
        stats = journal.stats()
        recent = journal.invalidations(limit=500)
        slowest = journal.slowest(limit=TOP)
    except StoreUnavailable as exc:
        board.error = f"the journal cannot be read: {exc}"
        return board
    for stat in stats:
        board.hits += stat.hits
        board.requests += stat.requests
    board.pages = [_row(s) for s in stats if s.kind == "page"][:TOP]
    board.others = [_row(s) for s in stats if s.kind != "page"][:TOP]
    board.never_stored = [
        _row(s) for s in stats if (s.misses or s.bypasses) and not s.stored and s.kind != "value"
    ][:TOP]
    counts: Counter[str] = Counter(tag for record in recent for tag in record.tags)
    most = counts.most_common(TOP)
    top = most[0][1] if most else 1
    board.tags = [{"tag": t, "count": n, "width": round(n / top * 100)} for t, n in most]
    board.recent = [
        {
            "at": time.strftime("%H:%M:%S", time.localtime(r.at)),
            "ago": _ago(board.at - r.at),
            "source": r.source,
            "origin": r.origin,
            "tags": list(r.tags[:6]),
            "more": r.tag_count - min(6, len(r.tags)),
            "failed": r.failed,
        }
        for r in recent[:20]
    ]
    board.slowest = [
        {
            "kind": s.kind,
            "name": s.name,
            "ms": round(s.seconds * 1000, 1),
            "stored": s.stored,
            "reason": s.reason or "",
            "ago": _ago(board.at - s.at),
        }
        for s in slowest
    ]
    return board


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"
