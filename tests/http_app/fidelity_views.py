"""Views for the issue-10 regressions: each reproduces one public page-cache bug report.

Served under their own URLconf (``tests.http_app.fidelity_views``) so the test settings can
change the middleware around them.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import path
from django.utils import translation
from django.utils.decorators import method_decorator
from django.utils.http import http_date
from django.views.decorators.cache import cache_control
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_GET
from django.views.generic import TemplateView

from freshcache.http import cache_page

from .views import _count


@cache_page
def host_link(request: HttpRequest) -> HttpResponse:
    _count("host_link")
    return HttpResponse(f'<a href="//{request.META["HTTP_HOST"]}/next/">next</a>')


@cache_page
def port_echo(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"port={request.get_port()} host={request.get_host()}")


@cache_page
@xframe_options_exempt
def embeddable(request: HttpRequest) -> HttpResponse:
    return HttpResponse("embed me")


@cache_page
@cache_control(public=True, max_age=300)
def greets_user(request: HttpRequest) -> HttpResponse:
    _count("greets_user")
    return render(request, "http_app/who.html")


class About(TemplateView):
    template_name = "http_app/who.html"


about = method_decorator(cache_page, name="dispatch")(About).as_view()


@cache_page
def raw_cookie(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(f"render {_count('raw_cookie')}")
    response["Set-Cookie"] = "visitor=v1; Path=/"
    return response


@cache_page(vary_on_headers=["Accept-Language"])
def dated(request: HttpRequest) -> HttpResponse:
    response = HttpResponse("dated")
    response["Cache-Control"] = "public, max-age=300"
    response["Last-Modified"] = http_date(1_700_000_000)
    response["Vary"] = "Accept-Language"
    return response


@cache_page
def nonce_page(request: HttpRequest) -> HttpResponse:
    # As in the CSP packages' docs: django-csp's {{ request.csp_nonce }}, Django 6.0's
    # {{ csp_nonce }} (its context processor); each test installs one of them.
    context = {"n": _count("nonce_page")}
    return render(request, "http_app/fidelity/nonce.html", context)


@cache_page
@require_GET
def get_only(request: HttpRequest) -> HttpResponse:
    return HttpResponse("only GET")


@cache_page
def lists_messages(request: HttpRequest) -> HttpResponse:
    return HttpResponse("messages: " + ",".join(str(m) for m in messages.get_messages(request)))


@cache_page
def in_german(request: HttpRequest) -> HttpResponse:
    translation.activate("de")
    return HttpResponse("auf Deutsch")


@cache_page
def custom_reason(request: HttpRequest) -> JsonResponse:
    response = JsonResponse({"ok": True}, reason="Fine Thanks")
    response.flavour = {"kind": ("sweet", "sour"), "tags": {"a"}}  # type: ignore[attr-defined]
    return response


class Opaque:
    pass


@cache_page
def opaque_attribute(request: HttpRequest) -> HttpResponse:
    response = HttpResponse("opaque")
    response.thing = Opaque()  # type: ignore[attr-defined]
    return response


@cache_page
def own_etag(request: HttpRequest) -> HttpResponse:
    response = HttpResponse("tagged by the view")
    response["ETag"] = '"v7"'
    return response


urlpatterns = [
    path("host/", host_link),
    path("port/", port_echo),
    path("embed/", embeddable),
    path("greets/", greets_user),
    path("about/", about),
    path("raw-cookie/", raw_cookie),
    path("dated/", dated),
    path("nonce/", nonce_page),
    path("get-only/", get_only),
    path("messages/", lists_messages),
    path("german/", in_german),
    path("reason/", custom_reason),
    path("opaque/", opaque_attribute),
    path("own-etag/", own_etag),
]
