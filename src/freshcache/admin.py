"""The admin's **Cache dashboard** (``dashboard/``): registered on the default admin site as the
change list of :class:`~freshcache.models.JournalCounter`, read-only. Who may see it: the
admin's view permission on that model (superusers; staff given
``freshcache.view_journalcounter``)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from .dashboard.views import POLL_SECONDS, body, data
from .models import JournalCounter


@admin.register(JournalCounter)
class DashboardAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        name = f"{self.opts.app_label}_{self.opts.model_name}_data"
        own = [path("data/", self.admin_site.admin_view(self._data), name=name)]
        return own + super().get_urls()

    def _data(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        return data(request)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        html, totals = body(request)
        context = {
            **self.admin_site.each_context(request),
            "title": "Cache dashboard",
            "opts": self.opts,
            "body": html,
            "totals": totals,
            "poll_ms": POLL_SECONDS * 1000,
        }
        return TemplateResponse(request, "freshcache/dashboard/page.html", context)
