"""The blog's URLs with the variant's page cache wrapped around the same blog views."""

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.decorators.cache import cache_page as django_cache_page

from bench.site.views import (
    bump_slow,
    counted,
    flood_page,
    floor,
    floor_page,
    plain_post,
    slow_page,
    small_page,
)
from blog import views
from freshcache import cache_page

#: Django's cache_page needs a timeout; long enough that nothing expires during a run.
DJANGO_TIMEOUT = 3600


def _wrap(view: Callable[..., Any]) -> Callable[..., Any]:
    # The blog's views carry freshcache's @cache_page themselves (example/blog/views.py): the
    # fc-* variants serve them as shipped; with freshcache disabled (nocache, django) they
    # render every time, and the django variant puts Django's cache_page around them.
    if settings.VARIANT == "django":
        return django_cache_page(DJANGO_TIMEOUT, cache="bench")(view)
    return view


def _post_view() -> Callable[..., Any]:
    if settings.VARIANT == "django":
        # Django's cache_page around the page only, with the view counted on every GET as
        # the blog's post_detail does (a Django hit would otherwise skip the count's UPDATE).
        return counted(django_cache_page(DJANGO_TIMEOUT, cache="bench")(views.post_page))
    return views.post_detail


blog_patterns = (
    [
        path("", _wrap(views.front_page), name="front"),
        path("post/<slug:slug>/", _post_view(), name="post"),
        path("tag/<slug:slug>/", _wrap(views.tag_detail), name="tag"),
        path("author/<slug:slug>/", _wrap(views.author_detail), name="author"),
    ],
    "blog",
)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("floor/", floor, name="floor"),
    path("floor/page/", floor_page, name="floor-page"),
    path("flood/", flood_page, name="flood"),
    path("slow/", cache_page(slow_page), name="slow"),
    path("slow/bump/", bump_slow, name="slow-bump"),
    path("small/<int:pk>/", cache_page(small_page), name="small"),
    path("plain/post/<slug:slug>/", cache_page(plain_post), name="plain-post"),
    path("", include(blog_patterns)),
]
