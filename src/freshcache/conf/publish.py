"""``FRESHCACHE["EDGE"]["PUBLISH"]``: pages written as files for a web server (docs/edge.md).

::

    FRESHCACHE = {"EDGE": {"PUBLISH": {"ROOT": BASE_DIR / "published", "URLS": [r"^/$"]}}}

* ``ROOT``: an absolute directory the web server serves (``try_files``); freshcache creates it
  and writes ``<ROOT><path>index.html`` for each published page.
* ``URLS``: regular expressions (``re.search`` on ``request.path``); a page is published when
  one matches and the page is the same for every visitor (see ``edge/publish.py``).
* ``RERENDER`` (``False``): after a write deletes files, render those pages again in the
  background (``edge/rerender.py``: a task with Django 6's ``TASKS`` when its backend is not the
  immediate one, else a thread of the process that deleted them).

Publishing adds the purger ``publish`` (``freshcache.edge.publish.Files``) to the purge queue,
which deletes the files of a write that the writer could not delete itself. Mistakes are
reported as kind ``"edge"`` (freshcache.E022).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .purgers import PurgerSettings

__all__ = ["PUBLISH_KEYS", "PublishSettings", "read_publish"]

PUBLISH_KEYS = ("ROOT", "URLS", "RERENDER")
_EXAMPLE = "{'ROOT': '/srv/www/published', 'URLS': [r'^/$', r'^/post/']}"


@dataclass(frozen=True)
class PublishSettings:
    """The validated ``EDGE["PUBLISH"]``."""

    #: The web root, absolute, without a trailing separator.
    root: str
    #: Patterns of the paths to publish (sources, for ``re.search``).
    urls: tuple[str, ...]
    #: Render deleted pages again in the background.
    rerender: bool = False

    def matches(self, path: str) -> bool:
        return any(_compiled(source).search(path) for source in self.urls)

    def purger(self) -> PurgerSettings:
        """The purger that deletes published files named by queued keys."""
        return PurgerSettings(
            name="publish", backend="freshcache.edge.publish.Files",
            options=(("ROOT", self.root),), batch=500, timeout=10.0, settle=None,
        )  # fmt: skip


_patterns: dict[str, re.Pattern[str]] = {}


def _compiled(source: str) -> re.Pattern[str]:
    found = _patterns.get(source)
    if found is None:
        found = _patterns[source] = re.compile(source)
    return found


def read_publish(value: Any, problem: Callable[[str], None]) -> PublishSettings | None:
    """Read ``EDGE["PUBLISH"]``; report each mistake through ``problem``; ``None`` if off or
    wrong (nothing is published then)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        problem(f"['PUBLISH'] must be a dict such as {_EXAMPLE}, not {value!r}")
        return None
    ok = True
    for key in value:
        if key not in PUBLISH_KEYS:
            problem(f"['PUBLISH'] has an unknown key {key!r}; it understands ROOT, URLS, "
                    "RERENDER")  # fmt: skip
            ok = False
    root = value.get("ROOT")
    if not isinstance(root, str | os.PathLike) or not os.path.isabs(os.fspath(root)):
        problem(f"['PUBLISH']['ROOT'] must be an absolute directory, not {root!r}")
        ok = False
    urls = value.get("URLS")
    if not isinstance(urls, list | tuple) or not urls:
        problem(f"['PUBLISH']['URLS'] must be a non-empty list of regular expressions such as "
                f"[r'^/$'], not {urls!r}")  # fmt: skip
        return None
    for source in urls:
        if not isinstance(source, str):  # a bytes pattern cannot search request.path
            problem(f"['PUBLISH']['URLS'] has {source!r}, which is not a regular expression "
                    "written as a string (r'^/post/')")  # fmt: skip
            ok = False
            continue
        try:
            re.compile(source)
        except (TypeError, re.error) as exc:
            problem(f"['PUBLISH']['URLS'] has {source!r}, which is not a regular expression: "
                    f"{exc}")  # fmt: skip
            ok = False
    rerender = value.get("RERENDER", False)
    if not isinstance(rerender, bool):
        problem(f"['PUBLISH']['RERENDER'] must be True or False, not {rerender!r}")
        ok = False
    if not ok:
        return None
    assert isinstance(root, str | os.PathLike)
    return PublishSettings(os.path.normpath(os.fspath(root)), tuple(urls), rerender)
