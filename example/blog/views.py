"""The blog's pages: plain function views that stitch cached fragments together.

Whatever differs per visitor or per request (the comment form and its CSRF token, the view
counter) is rendered here, outside the cached fragments.
"""

from django.db.models import F
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_http_methods, require_safe

from blog import fragments
from blog.forms import CommentForm
from blog.models import Author, Post, Tag

# Large enough for any real blog, small enough that ?page=<garbage> cannot mint cache keys.
MAX_PAGE_DIGITS = 5


def _page_number(request: HttpRequest) -> int:
    raw = request.GET.get("page", "1")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= MAX_PAGE_DIGITS) or int(raw) < 1:
        raise Http404("No such page.")
    return int(raw)


def _html(fragment: str) -> str:
    # Fragments are HTML we rendered ourselves with autoescaping on; a store may hand them
    # back as plain str, so mark them safe again rather than escaping them twice.
    return mark_safe(fragment)


@require_safe
def front_page(request: HttpRequest) -> HttpResponse:
    page_number = _page_number(request)
    context = {
        "post_list": _html(fragments.render_front_page(page_number)),
        "tag_cloud": _html(fragments.render_tag_cloud()),
        "page_number": page_number,
    }
    return render(request, "blog/front.html", context)


@require_http_methods(["GET", "HEAD", "POST"])
def post_detail(request: HttpRequest, slug: str) -> HttpResponse:
    post = get_object_or_404(Post, slug=slug)
    if request.method == "POST":
        form = CommentForm(request.POST)
        if form.is_valid():
            comment = form.save(commit=False)
            comment.post = post
            comment.save()
            # Post/Redirect/Get: a reload does not post the comment twice.
            return redirect(f"{post.get_absolute_url()}#comment-{comment.pk}")
    else:
        form = CommentForm()
        if request.method == "GET":
            # Atomic in SQL, so concurrent readers never lose a count. This write touches
            # only a volatile column that no fragment shows.
            Post.objects.filter(pk=post.pk).update(view_count=F("view_count") + 1)
            post.view_count += 1  # what the UPDATE wrote, give or take concurrent readers
    context = {
        "post": post,
        "article": _html(fragments.render_post(post)),
        "comments": _html(fragments.render_comments(post)),
        "form": form,
    }
    return render(request, "blog/post_detail.html", context)


@require_safe
def tag_detail(request: HttpRequest, slug: str) -> HttpResponse:
    tag = get_object_or_404(Tag, slug=slug)
    page_number = _page_number(request)
    context = {"tag": tag, "post_list": _html(fragments.render_tag_posts(tag, page_number))}
    return render(request, "blog/tag_detail.html", context)


@require_safe
def author_detail(request: HttpRequest, slug: str) -> HttpResponse:
    author = get_object_or_404(Author, slug=slug)
    page_number = _page_number(request)
    context = {
        "author": author,
        "post_list": _html(fragments.render_author_posts(author, page_number)),
    }
    return render(request, "blog/author_detail.html", context)
