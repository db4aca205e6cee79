"""``migrate`` installs the log triggers by itself (``INSTALL_TRIGGERS``, on by default).

Django sends ``post_migrate`` once per installed app after every ``migrate``; the triggers are
(re)installed once, after the last app, so models added or keyed columns changed by the
migrations just applied are covered before the command returns.
"""

from __future__ import annotations

import logging
from typing import Any

from django.apps import apps

__all__ = ["on_post_migrate"]

logger = logging.getLogger("freshcache")


def on_post_migrate(sender: Any, *, using: str = "default", **kwargs: Any) -> None:
    from django.db import connections

    from ..conf import get_settings
    from . import reset
    from .triggers import install

    configs = list(apps.get_app_configs())
    if not configs or sender is not configs[-1]:
        return
    reset()
    settings = get_settings()
    if not settings.install_triggers or settings.log_database != using:
        return
    if connections[using].vendor != "postgresql":
        return
    if "freshcache_log" not in connections[using].introspection.table_names():
        return  # ``migrate`` ran with a target before freshcache's log migration
    states = install(using)
    bad = [s.table for s in states if s.state in ("missing", "outdated")]
    if bad:
        logger.warning(
            "freshcache: log triggers are not installed on %s; run "
            "`manage.py freshcache changefeed install` (writes from outside Django there are "
            "not seen until then)",
            ", ".join(bad),
        )
    reset()
