"""Placeholder views so `blog.urls` imports; the real views follow shortly."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404

from blog.models import Author, Post, Tag


def front_page(request: HttpRequest) -> HttpResponse:
    return HttpResponse("\n".join(p.title for p in Post.objects.all()[:10]))


def post_detail(request: HttpRequest, slug: str) -> HttpResponse:
    return HttpResponse(get_object_or_404(Post, slug=slug).title)


def tag_detail(request: HttpRequest, slug: str) -> HttpResponse:
    return HttpResponse(get_object_or_404(Tag, slug=slug).name)


def author_detail(request: HttpRequest, slug: str) -> HttpResponse:
    return HttpResponse(get_object_or_404(Author, slug=slug).name)
