from __future__ import annotations

from django.apps import AppConfig
from django.core import checks
from django.core.signals import setting_changed


class FreshcacheConfig(AppConfig):
    name = "freshcache"
    verbose_name = "freshcache"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import capture
        from .checks import check_settings
        from .conf import _on_setting_changed

        setting_changed.connect(_on_setting_changed, dispatch_uid="freshcache-settings")
        checks.register(check_settings, "freshcache")
        capture.install()
