"""The framework floor: the cheapest response Django can give through the blog's middleware."""

from django.http import HttpRequest, HttpResponse

BODY = b"<!doctype html><title>floor</title><p>A constant response.</p>"


def floor(request: HttpRequest) -> HttpResponse:
    return HttpResponse(BODY)
