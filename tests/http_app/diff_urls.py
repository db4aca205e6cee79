"""URLs of the differential test: ``/<form>/<view>/``, form ``m``/``ma`` (bare, sync/async:
for ``CacheMiddleware``) or ``d``/``da`` (wrapped by ``cache_page``). See ``diff_views``."""

from django.urls import path

from .diff_views import SPECS

urlpatterns = [
    path(f"{form}/{spec.name}/", view, name=f"diff-{form}-{spec.name}")
    for spec in SPECS
    for form, view in spec.views.items()
]
