"""A middleware of the kind ``FRESHCACHE["EARLY_HITS_TRUSTED_MIDDLEWARE"]`` is for: what it
does is the same for every request, so an early hit may replay its header (docs/pages.md)."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


class PoweredByMiddleware:
    """Adds ``X-Powered-By: mysite`` to every response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response["X-Powered-By"] = "mysite"
        return response
