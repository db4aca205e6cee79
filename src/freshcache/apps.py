from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.core.signals import setting_changed
from django.db.models.signals import post_migrate


class FreshcacheConfig(AppConfig):
    name = "freshcache"
    verbose_name = "freshcache"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import capture
        from .checks import check_settings
        from .conf import _on_setting_changed
        from .http.early import check_early_hits, on_setting_changed
        from .log.install import on_post_migrate

        setting_changed.connect(_on_setting_changed, dispatch_uid="freshcache-settings")
        setting_changed.connect(_sync_metrics, dispatch_uid="freshcache-metrics")
        setting_changed.connect(on_setting_changed, dispatch_uid="freshcache-early")
        _sync_metrics(setting="FRESHCACHE")
        post_migrate.connect(on_post_migrate, dispatch_uid="freshcache-triggers")
        checks.register(check_settings, "freshcache")
        checks.register(check_early_hits, "freshcache")
        capture.install()


def _sync_metrics(*, setting: str, **kwargs: Any) -> None:
    if setting == "FRESHCACHE":
        from . import journal, metrics
        from .http import shadow

        metrics.sync()
        journal.sync()
        shadow.sync()
