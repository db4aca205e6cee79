"""``FRESHCACHE["EDGE"]``: which edge caches get surrogate keys (docs/edge.md).

::

    FRESHCACHE = {"EDGE": {"KEYS": ["varnish"]}}

* ``KEYS``: the edges in front of the site, by name (``akamai``, ``cloudflare``, ``fastly``,
  ``varnish``); each gets its own header. Empty (the default): freshcache does nothing for edges.
* ``SEND_KEYS`` (``True``): ``False`` sends no key header (local development, or a server that is
  not behind the edge); pages are then marked uncacheable for the edge like every response it
  could not purge.
* ``MAX_HEADER_BYTES`` (``None``): a lower budget for every key header than the edges' own
  (``edge/vendors.py``), e.g. Varnish with a smaller ``http_resp_hdr_len``, or a proxy in
  between with a smaller header buffer.
* ``PURGERS`` (``[]``): the edges to purge after each write, one dict each (``purgers.py``).
* ``PUBLISH`` (``None``): pages written as files for nginx (``publish.py``).

Mistakes are reported as kind ``"edge"`` (freshcache.E022), like the other settings' mistakes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..edge.vendors import EDGES
from .publish import PublishSettings, read_publish
from .purgers import PurgerSettings, read_purgers
from .readers import Problem, Reader, did_you_mean

__all__ = ["EDGE_KEYS", "EdgeSettings", "read_edge"]

#: The keys of ``FRESHCACHE["EDGE"]`` and their defaults.
EDGE_KEYS: dict[str, Any] = {
    "KEYS": (), "SEND_KEYS": True, "MAX_HEADER_BYTES": None, "PURGERS": (), "PUBLISH": None,
}  # fmt: skip


@dataclass(frozen=True)
class EdgeSettings:
    """The validated ``FRESHCACHE["EDGE"]``."""

    #: Names of the edges in front of the site, in the order given (``edge.vendors.EDGES``).
    keys: tuple[str, ...] = ()
    send_keys: bool = True
    max_header_bytes: int | None = None
    #: The edges freshcache purges after writes (``conf/purgers.py``).
    purgers: tuple[PurgerSettings, ...] = ()
    #: Pages published as files for a web server (``conf/publish.py``), or ``None``.
    publish: PublishSettings | None = None

    @property
    def enabled(self) -> bool:
        """Whether freshcache labels responses for an edge at all."""
        return bool(self.keys)


def _shown(value: Any) -> str:
    return f"the string {value!r}" if isinstance(value, str) else repr(value)


def read_edge(reader: Reader) -> EdgeSettings:
    value = reader.get("EDGE")
    if value is None:
        return EdgeSettings()

    def problem(message: str) -> None:
        reader.problems.append(Problem("EDGE", "edge", f"FRESHCACHE['EDGE']{message}"))

    if not isinstance(value, dict):
        problem(f" must be a dict such as {{'KEYS': ['varnish']}}, not {_shown(value)}")
        return EdgeSettings()
    for name in value:
        if name not in EDGE_KEYS:
            hint = did_you_mean(name, EDGE_KEYS) if isinstance(name, str) else ""
            problem(f" has an unknown key {name!r}{hint}; it understands "
                    f"{', '.join(sorted(EDGE_KEYS))}")  # fmt: skip
    purgers = read_purgers(value.get("PURGERS"), problem)
    publish = read_publish(value.get("PUBLISH"), problem)
    if publish is not None:
        if any(p.name == "publish" for p in purgers):
            problem("['PURGERS'] has a purger named 'publish', the name PUBLISH's own purger "
                    "takes: give it another 'NAME'")  # fmt: skip
        # First: the worker sends to each purger in turn, and deleting local files takes
        # milliseconds, while an edge that does not answer holds the next ones for its TIMEOUT.
        purgers = (publish.purger(), *purgers)
    return EdgeSettings(
        keys=_read_names(value.get("KEYS", ()), problem),
        send_keys=_read_switch(value.get("SEND_KEYS", True), problem),
        max_header_bytes=_read_bytes(value.get("MAX_HEADER_BYTES"), problem),
        purgers=purgers,
        publish=publish,
    )


def _read_names(value: Any, problem: Any) -> tuple[str, ...]:
    known = ", ".join(sorted(EDGES))
    if not isinstance(value, list | tuple):
        fix = f" (write [{value!r}])" if isinstance(value, str) else ""
        problem(f"['KEYS'] must be a list of edge names ({known}), not {_shown(value)}{fix}")
        return ()
    names: list[str] = []
    for item in value:
        if isinstance(item, str) and item in EDGES:
            if item not in names:
                names.append(item)
        else:
            hint = did_you_mean(item, EDGES) if isinstance(item, str) else ""
            problem(f"['KEYS'] has {item!r}, which is not an edge freshcache knows ({known})"
                    f"{hint}")  # fmt: skip
    return tuple(names)


def _read_switch(value: Any, problem: Any) -> bool:
    if isinstance(value, bool):
        return value
    fix = " (write it without quotes)" if isinstance(value, str) else ""
    problem(f"['SEND_KEYS'] must be True or False, not {_shown(value)}{fix}")
    return True


def _read_bytes(value: Any, problem: Any) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return value
    problem(f"['MAX_HEADER_BYTES'] must be a positive whole number of bytes, or None, not "
            f"{_shown(value)}")  # fmt: skip
    return None
