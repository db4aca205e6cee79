"""``FRESHCACHE["EDGE"]["PURGERS"]``: which edges freshcache purges, and how (docs/edge.md).

::

    FRESHCACHE = {"EDGE": {"KEYS": ["varnish"], "PURGERS": [
        {"BACKEND": "freshcache.edge.purgers.Varnish", "URLS": ["http://127.0.0.1:6081/"]},
    ]}}

Each dict has ``BACKEND`` (a dotted path to a ``freshcache.edge.purgers.Purger`` subclass), the
backend's own options (``Purger.OPTIONS``) and these, all optional:

* ``NAME``: the purger's name in the queue (default: the backend's class name, lower case);
  unique. Renaming a purger leaves its queued keys behind (``manage.py freshcache purges``
  shows them).
* ``RATE`` (requests per second, ``None``: no limit) and ``BURST``: a token bucket per worker
  process (default: the backend's, ``Purger.RATE``/``BURST``).
* ``BATCH``: most keys per request, at most the API's limit (``Purger.MAX_KEYS``).
* ``TIMEOUT`` (10 seconds): one request. A worker holds the keys it sends for twice that plus one
  second; if it dies, another worker sends them after that.
* ``BACKOFF`` (0.5) and ``MAX_BACKOFF`` (300): seconds of the exponential backoff after failures.
* ``SETTLE`` (2.0 seconds, ``None``: off): each key is purged a second time this long after its
  first purge. A response the origin validated before the write's bump can reach the edge after
  the first purge (the edge inserts it once its headers arrive) and would then be kept; the
  second purge removes it. It must exceed the time from freshcache's check of a page to the
  edge receiving its headers (well under a millisecond normally; 61 ms was seen in the tests,
  with the readers, the server and the workers in one Python process). Without it, such a page
  stays until the key's next purge.

Mistakes are reported as kind ``"edge"`` (freshcache.E022).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .readers import did_you_mean

__all__ = ["PURGER_KEYS", "PurgerSettings", "read_purgers"]

#: The keys every purger understands, and their defaults (``None`` for RATE/BURST/BATCH: the
#: backend's).
PURGER_KEYS: dict[str, Any] = {
    "BACKEND": None, "NAME": None, "RATE": None, "BURST": None, "BATCH": None,
    "TIMEOUT": 10.0, "BACKOFF": 0.5, "MAX_BACKOFF": 300.0, "SETTLE": 2.0,
}  # fmt: skip

_EXAMPLE = "{'BACKEND': 'freshcache.edge.purgers.Varnish', 'URLS': ['http://127.0.0.1:6081/']}"


@dataclass(frozen=True)
class PurgerSettings:
    """One validated purger."""

    name: str
    backend: str
    #: The backend's own options, as sorted pairs (hashable).
    options: tuple[tuple[str, Any], ...] = ()
    rate: float | None = None
    burst: int = 1
    batch: int = 100
    timeout: float = 10.0
    backoff: float = 0.5
    max_backoff: float = 300.0
    settle: float | None = 2.0

    @property
    def claim_seconds(self) -> float:
        """How long a worker holds keys it sends before another may send them."""
        return 2 * self.timeout + 1.0

    def build(self) -> Any:
        """The :class:`~freshcache.edge.purgers.Purger` (one per settings object)."""
        return _build(self)


@lru_cache(maxsize=32)
def _build(settings: PurgerSettings) -> Any:
    from django.utils.module_loading import import_string

    cls = import_string(settings.backend)
    return cls(settings.name, dict(settings.options), timeout=settings.timeout)


def read_purgers(value: Any, problem: Callable[[str], None]) -> tuple[PurgerSettings, ...]:
    """Read ``EDGE["PURGERS"]``; report each mistake through ``problem`` (a message fragment
    after ``FRESHCACHE['EDGE']``) and leave that purger out."""
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        problem(f"['PURGERS'] must be a list of dicts such as [{_EXAMPLE}], not {value!r}")
        return ()
    found: list[PurgerSettings] = []
    for index, item in enumerate(value):
        where = f"['PURGERS'][{index}]"
        messages: list[str] = []
        read = _read_one(item, messages)
        for message in messages:
            problem(where + message)
        if read is None or messages:
            continue
        if any(p.name == read.name for p in found):
            problem(f"{where} is named {read.name!r} like an earlier purger: give each its own "
                    "'NAME'")  # fmt: skip
            continue
        found.append(read)
    return tuple(found)


def _read_one(item: Any, wrong: list[str]) -> PurgerSettings | None:
    if not isinstance(item, dict):
        wrong.append(f" must be a dict such as {_EXAMPLE}, not {item!r}")
        return None
    backend = item.get("BACKEND")
    if not isinstance(backend, str) or "." not in backend:
        wrong.append(f"['BACKEND'] must be a dotted path such as "
                     f"'freshcache.edge.purgers.Varnish', not {backend!r}")  # fmt: skip
        return None
    try:
        from django.utils.module_loading import import_string

        from ..edge.purgers.base import Purger

        cls = import_string(backend)
    except Exception as exc:  # ImportError; "..." and ".x" raise TypeError and ValueError
        wrong.append(f"['BACKEND'] {backend!r} cannot be imported: {exc}")
        return None
    if cls is Purger:
        wrong.append(f"['BACKEND'] {backend!r} is the base class, which purges nothing: name a "
                     "backend such as 'freshcache.edge.purgers.Varnish'")  # fmt: skip
        return None
    if not (isinstance(cls, type) and issubclass(cls, Purger)):
        wrong.append(f"['BACKEND'] {backend!r} is not a freshcache.edge.purgers.Purger")
        return None
    own = {k: v for k, v in item.items() if k not in PURGER_KEYS}
    for key in own:
        if key not in cls.OPTIONS:
            known = sorted({*PURGER_KEYS, *cls.OPTIONS})
            hint = did_you_mean(key, known) if isinstance(key, str) else ""
            wrong.append(f" has an unknown key {key!r}{hint}; {cls.__name__} understands "
                         f"{', '.join(known)}")  # fmt: skip
    wrong.extend(cls.check(own))
    name = item.get("NAME", cls.__name__.lower())
    if not isinstance(name, str) or not name or len(name) > 100:
        wrong.append(f"['NAME'] must be a non-empty string of at most 100 characters, not "
                     f"{name!r}")  # fmt: skip
    rate = item.get("RATE", cls.RATE)
    if rate is not None and not _positive(rate):
        wrong.append(f"['RATE'] must be a positive number of requests per second, or None, "
                     f"not {rate!r}")  # fmt: skip
    burst = item.get("BURST", cls.BURST)
    batch = item.get("BATCH", cls.MAX_KEYS)
    for key, number in (("BURST", burst), ("BATCH", batch)):
        if not (isinstance(number, int) and not isinstance(number, bool) and number > 0):
            wrong.append(f"[{key!r}] must be a positive whole number, not {number!r}")
    if isinstance(batch, int) and batch > cls.MAX_KEYS:
        wrong.append(f"['BATCH'] is {batch}, more than {cls.__name__}'s API accepts in one "
                     f"request ({cls.MAX_KEYS})")  # fmt: skip
    seconds = {k: item.get(k, PURGER_KEYS[k]) for k in ("TIMEOUT", "BACKOFF", "MAX_BACKOFF")}
    for key, number in seconds.items():
        if not _positive(number):
            wrong.append(f"[{key!r}] must be a positive number of seconds, not {number!r}")
    settle = item.get("SETTLE", PURGER_KEYS["SETTLE"])
    if settle is not None and not _positive(settle):
        wrong.append(f"['SETTLE'] must be a positive number of seconds, or None, not {settle!r}")
    if wrong:
        return None
    return PurgerSettings(
        name=name, backend=backend,
        options=tuple(sorted(((k, _frozen(v)) for k, v in own.items()), key=lambda kv: kv[0])),
        rate=None if rate is None else float(rate), burst=burst, batch=batch,
        timeout=float(seconds["TIMEOUT"]), backoff=float(seconds["BACKOFF"]),
        max_backoff=float(seconds["MAX_BACKOFF"]),
        settle=None if settle is None else float(settle),
    )  # fmt: skip


def _frozen(value: Any) -> Any:
    """``value`` with lists as tuples and dicts as sorted pairs (settings must be hashable)."""
    if isinstance(value, list | tuple):
        return tuple(map(_frozen, value))
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    return value


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1e9
