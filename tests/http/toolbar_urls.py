"""A cached page with a fragment and a ``@cached`` function, under the debug toolbar's URLs."""

from django.http import HttpRequest, HttpResponse
from django.template import RequestContext, Template
from django.urls import include, path

from freshcache import cache_page, cached
from tests.testapp.models import Item


@cached
def count_named(name: str) -> int:
    return Item.objects.filter(name=name).count()


PAGE = Template(
    "{% load freshcache %}<html><body><h1>{{ count }} apples</h1>"
    "{% cachefresh 'item-list' %}<ul>{% for item in items %}<li>{{ item.name }}</li>"
    "{% endfor %}</ul>{% endcachefresh %}</body></html>"
)


@cache_page
def shop(request: HttpRequest) -> HttpResponse:
    context = {"count": count_named("apple"), "items": Item.objects.order_by("pk")}
    return HttpResponse(PAGE.render(RequestContext(request, context)))


def add(request: HttpRequest) -> HttpResponse:
    Item.objects.create(name="apple")
    return HttpResponse("<html><body>added</body></html>")


urlpatterns = [
    path("shop/", shop, name="shop"),
    path("add/", add),
    path("__debug__/", include("debug_toolbar.urls")),
]
