"""The blog's URLs with the variant's page cache wrapped around the same blog views."""

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.decorators.cache import cache_page as django_cache_page

from bench.site.views import floor
from blog import views

#: Django's cache_page needs a timeout; long enough that nothing expires during a run.
DJANGO_TIMEOUT = 3600


def _wrap(view: Callable[..., Any]) -> Callable[..., Any]:
    if settings.VARIANT == "django":
        return django_cache_page(DJANGO_TIMEOUT, cache="bench")(view)
    if settings.VARIANT.startswith("fc-"):
        from freshcache.http import cache_page

        return cache_page(view)
    return view


blog_patterns = (
    [
        path("", _wrap(views.front_page), name="front"),
        path("post/<slug:slug>/", _wrap(views.post_detail), name="post"),
        path("tag/<slug:slug>/", _wrap(views.tag_detail), name="tag"),
        path("author/<slug:slug>/", _wrap(views.author_detail), name="author"),
    ],
    "blog",
)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("floor/", floor, name="floor"),
    path("", include(blog_patterns)),
]
