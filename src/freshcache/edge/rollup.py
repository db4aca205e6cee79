"""Which keys label a page at the edge: its tags' keys, rolled up until they fit the header.

The guarantee (tested with Hypothesis in tests/edge/test_rollup.py): :func:`label` returns
keys that fit the :class:`Budget`, and for every tag ``T`` it was given, ``purge_keys(T)``
contains one of them; or it returns ``None``, and the response must be marked uncacheable for the
edge. A truncated key list is never returned: a key the edge drops is a purge that never reaches
the page.

How tags are rolled up when their keys do not fit (each step only makes the edge purge more):

1. predicate values of one column become the column's wildcard
   (``blog.comment?post_id=7``, ``…=8`` → ``blog.comment?post_id=*``);
2. rows and wildcards of one table become the table (``blog.post:7``, ``blog.post:8`` →
   ``blog.post``);
3. if that is still too much, the page gets the one catch-all key, which every bump purges.

Within a step, the groups that save the most keys go first (then the most bytes, then by name,
so the result is deterministic); a group whose table the page already depends on costs no
precision at all, since that table's writes purge the page anyway. The step stops as soon as the
header fits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from .keys import CATCH_ALL_KEY, ancestors, edge_key, parent

__all__ = ["Budget", "label"]

#: Tag sets up to this size have their labels remembered (a hit then costs one lookup).
_CACHED_SET_SIZE = 512


@dataclass(frozen=True)
class Budget:
    """What one edge header can hold."""

    #: Bytes of the header's value.
    max_bytes: int
    #: Keys in the header, or ``None`` for no limit.
    max_keys: int | None = None
    #: Bytes between two keys.
    separator_bytes: int = 1
    #: Keys already in the header (put there by the view) and the bytes they take.
    fixed_keys: int = 0
    fixed_bytes: int = 0

    def fits(self, count: int, length: int) -> bool:
        total = count + self.fixed_keys
        if self.max_keys is not None and total > self.max_keys:
            return False
        size = length + self.fixed_bytes + self.separator_bytes * max(total - 1, 0)
        return size <= self.max_bytes


def label(tags: Iterable[str], budget: Budget) -> tuple[str, ...] | None:
    """The keys (sorted) that label a page depending on ``tags`` within ``budget``, or ``None``
    when not even the catch-all key fits (see the module docstring)."""
    frozen = frozenset(tags)
    if len(frozen) <= _CACHED_SET_SIZE:
        return _cached_label(frozen, budget)
    return _label(frozen, budget)


@lru_cache(maxsize=1024)
def _cached_label(tags: frozenset[str], budget: Budget) -> tuple[str, ...] | None:
    return _label(tags, budget)


def _label(tags: frozenset[str], budget: Budget) -> tuple[str, ...] | None:
    nodes = {tag: edge_key(tag) for tag in tags}
    length = sum(map(len, nodes.values()))
    if nodes:
        if budget.fits(len(nodes), length):
            return tuple(sorted(nodes.values()))
        # Predicate values (two roll-ups above them) first, then rows and wildcards (one).
        for depth in (2, 1):
            length = _roll_up(nodes, length, depth, budget)
            if budget.fits(len(nodes), length):
                return tuple(sorted(nodes.values()))
    # No table is left to merge into: the one key every bump purges. A page without tags gets it
    # too (an edge must be able to purge everything it holds).
    if budget.fits(1, len(CATCH_ALL_KEY)):
        return (CATCH_ALL_KEY,)
    return None


def _roll_up(nodes: dict[str, str], length: int, depth: int, budget: Budget) -> int:
    """Merge groups of ``nodes`` with ``depth`` roll-ups into their parent until the header fits;
    return the new total key length. ``nodes`` (tag -> key) is changed in place."""
    groups: dict[str, list[str]] = {}
    for tag in nodes:
        if len(ancestors(tag)) == depth:
            up = parent(tag)
            assert up is not None
            groups.setdefault(up, []).append(tag)
    sep = budget.separator_bytes
    ranked = []
    for up, members in groups.items():
        present = up in nodes
        up_key = edge_key(up)
        saved_keys = len(members) - (0 if present else 1)
        saved_bytes = sum(len(nodes[m]) + sep for m in members)
        saved_bytes -= 0 if present else len(up_key) + sep
        if saved_keys > 0 or saved_bytes > 0:
            ranked.append((-saved_keys, -saved_bytes, up, up_key, members))
    ranked.sort(key=lambda item: item[:3])
    for _, _, up, up_key, members in ranked:
        if budget.fits(len(nodes), length):
            break
        for member in members:
            length -= len(nodes.pop(member))
        if up not in nodes:
            nodes[up] = up_key
            length += len(up_key)
    return length
