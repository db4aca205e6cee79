"""``FRESHCACHE["SHADOW"]``: shadow mode, re-rendering sampled page hits (docs/observability.md).

::

    FRESHCACHE = {"SHADOW": {"RATE": 0.01, "EXCLUDE": [r"^/counter/"]}}

* ``RATE``: the share of page hits re-rendered after their response was sent, a number from 0
  (off) to 1 (every GET hit).
* ``EXCLUDE`` (``[]``): regular expressions (``re.search`` on ``request.path``) of paths never
  shadowed: views with side effects, pages with per-request text outside placeholders.
* ``QUEUE_SIZE`` (``100``): shadow renders waiting for the background thread at most; a hit
  sampled while it is full is not shadowed (counted as ``dropped``).

``None`` (the default) or a ``RATE`` of 0: off. Mistakes are reported as kind ``"shadow"``
(freshcache.E024): like every mistake in ``FRESHCACHE``, they turn caching off.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from .readers import Problem, Reader, did_you_mean

__all__ = ["SHADOW_KEYS", "ShadowSettings", "read_shadow"]

#: The keys of ``FRESHCACHE["SHADOW"]`` and their defaults.
SHADOW_KEYS: dict[str, Any] = {"RATE": 0.0, "EXCLUDE": (), "QUEUE_SIZE": 100}
_EXAMPLE = "{'RATE': 0.01}"


@dataclass(frozen=True)
class ShadowSettings:
    """The validated ``FRESHCACHE["SHADOW"]``."""

    #: The share of GET page hits re-rendered, from 0 (off) to 1.
    rate: float = 0.0
    #: Patterns of the paths never shadowed (sources, for ``re.search``).
    exclude: tuple[str, ...] = ()
    #: Shadow renders waiting at most; more are dropped.
    queue_size: int = 100

    def excludes(self, path: str) -> bool:
        return any(re.search(source, path) for source in self.exclude)


def _shown(value: Any) -> str:
    return f"the string {value!r}" if isinstance(value, str) else repr(value)


def read_shadow(reader: Reader) -> ShadowSettings:
    value = reader.get("SHADOW")
    if value is None:
        return ShadowSettings()
    problems: list[str] = []

    def problem(message: str) -> None:
        problems.append(message)
        reader.problems.append(Problem("SHADOW", "shadow", f"FRESHCACHE['SHADOW']{message}"))

    if not isinstance(value, dict):
        fix = f" (write {{'RATE': {value!r}}})" if isinstance(value, int | float) else ""
        problem(f" must be a dict such as {_EXAMPLE}, or None, not {_shown(value)}{fix}")
        return ShadowSettings()
    for name in value:
        if name not in SHADOW_KEYS:
            hint = did_you_mean(name, SHADOW_KEYS) if isinstance(name, str) else ""
            problem(f" has an unknown key {name!r}{hint}; it understands "
                    f"{', '.join(sorted(SHADOW_KEYS))}")  # fmt: skip
    rate = value.get("RATE", 0.0)
    if not (
        isinstance(rate, int | float)
        and not isinstance(rate, bool)
        and math.isfinite(rate)
        and 0 <= rate <= 1
    ):
        percent = ""
        if isinstance(rate, int | float) and not isinstance(rate, bool) and 1 < rate <= 100:
            percent = f" (a share: write {rate / 100:g} for {rate:g}%)"
        problem(f"['RATE'] must be a number from 0 to 1, without quotes, not {_shown(rate)}"
                f"{percent}")  # fmt: skip
    exclude = value.get("EXCLUDE", ())
    if not isinstance(exclude, list | tuple):
        fix = f" (write [{exclude!r}])" if isinstance(exclude, str) else ""
        problem(f"['EXCLUDE'] must be a list of regular expressions such as [r'^/counter/'], "
                f"not {_shown(exclude)}{fix}")  # fmt: skip
        exclude = ()
    for source in exclude:
        if not isinstance(source, str):
            problem(f"['EXCLUDE'] has {source!r}, which is not a regular expression written as "
                    "a string (r'^/counter/')")  # fmt: skip
            continue
        try:
            re.compile(source)
        except re.error as exc:
            problem(f"['EXCLUDE'] has {source!r}, which is not a regular expression: {exc}")
    size = value.get("QUEUE_SIZE", 100)
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        problem(f"['QUEUE_SIZE'] must be a positive whole number, not {_shown(size)}")
    if problems:
        return ShadowSettings()
    return ShadowSettings(float(rate), tuple(exclude), size)
