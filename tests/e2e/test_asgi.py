"""The example blog under uvicorn (ASGI): concurrent requests never mix, canaries never stick.

Tags are collected in a ``ContextVar`` per request; if they leaked between concurrent requests a
post page would list another post's tags (the footer shows them) or show another page's content.
"""

from __future__ import annotations

import html
import re
import uuid

import pytest
import requests

from .client import Got, form_fields, get, get_many
from .conftest import Blog, current_posts

pytestmark = [pytest.mark.postgres]

CONCURRENT = 100
POST_TAG_RE = re.compile(r"^blog\.post:(\d+)$|post_id=(\d+)$")


def expected_pages(blog: Blog) -> dict[str, tuple[str, int | None]]:
    """URL path -> (text only that page shows, the post pk for post pages)."""
    pages: dict[str, tuple[str, int | None]] = {}
    for pk, slug, title in current_posts():  # titles as edited by tests that ran before
        pages[f"/post/{slug}/"] = (f"<h1>{html.escape(title)}</h1>", pk)
    front = get(blog.url("/"))
    for path in sorted(set(re.findall(r'href="(/(?:tag|author)/[^"/]+/)"', front.text))):
        page = get(blog.url(path))
        assert page.status == 200
        match = re.search(r'<h1 class="page-title">(.*?)</h1>', page.text, re.S)
        assert match, path
        pages[path] = (match.group(0), None)
    return pages


def check(got: Got, path: str, want: str, post_pk: int | None) -> None:
    assert got.status == 200, (path, got.status)
    assert want in got.text, f"{path} answered with another page ({got.state})"
    if post_pk is None:
        return
    tags = got.tags
    assert f"blog.post:{post_pk}" in tags, (path, got.state, tags)
    for tag in tags:
        match = POST_TAG_RE.search(tag)
        if match and "*" not in tag:
            pk = int(match.group(1) or match.group(2))
            assert pk == post_pk, f"{path} (post {post_pk}) lists tag {tag} ({got.state})"


def test_concurrent_requests_do_not_bleed(uvicorn_blog: Blog) -> None:
    pages = expected_pages(uvicorn_blog)
    assert len(pages) >= 20
    paths = sorted(pages)
    for round_ in range(2):  # the first round renders concurrently; the second mostly hits
        order = [paths[(i * 7 + round_) % len(paths)] for i in range(CONCURRENT)]
        results = get_many([uvicorn_blog.url(p) for p in order], concurrency=CONCURRENT)
        for path, got in zip(order, results, strict=True):
            assert got.status == 200, f"{path}: {got.status}\n{uvicorn_blog.log()}"
            check(got, path, *pages[path])
        states = {g.state for g in results}
        assert states <= {"hit", "miss"}, states
        if round_ == 1:
            assert "hit" in states


CANARY_HEADERS = {
    "X-Forwarded-Host": "canary-xfh.example",
    "X-Original-URL": "/canary-xou/",
    "X-Rewrite-URL": "/canary-xrw/",
    "X-HTTP-Method-Override": "CANARYMETHOD",
    "Forwarded": "for=192.0.2.1;host=canary-fwd.example;proto=https",
    "X-Forwarded-Proto": "canaryproto",
    "Accept-Language": "canary-al",
}


def canaries_in(got: Got) -> list[str]:
    blob = (got.text + "\n" + "\n".join(f"{k}: {v}" for k, v in got.headers.items())).lower()
    return sorted(set(re.findall(r"canary[-a-z0-9]*", blob)))


def invalidate_post(blog: Blog, slug: str) -> None:
    """Post a comment in the server's own process: its cached post and front pages go cold."""
    browser = requests.Session()
    url = blog.url(f"/post/{slug}/")
    token = dict(form_fields(browser.get(url, timeout=15).text))["csrfmiddlewaretoken"]
    posted = browser.post(
        url, data={"csrfmiddlewaretoken": token, "author_name": "Poison test", "body": "cold"},
        timeout=15, allow_redirects=False,
    )  # fmt: skip
    assert posted.status_code == 302


def test_poisoning_canaries_never_reach_a_clean_request(uvicorn_blog: Blog) -> None:
    _, slug, _ = uvicorn_blog.posts[6]
    invalidate_post(uvicorn_blog, slug)
    cache_buster = uuid.uuid4().hex
    cases = [
        # (poisoned path, extra headers, the clean path that shares or neighbours its key)
        (f"/post/{slug}/?v={cache_buster}", CANARY_HEADERS, f"/post/{slug}/?v={cache_buster}"),
        (f"/post/{slug}/", CANARY_HEADERS, f"/post/{slug}/"),
        ("/?utm_source=canary-utm&fbclid=canary-fb", CANARY_HEADERS, "/"),
        ("/?page=1&page=canary-dup", {}, "/?page=1"),
        (f"/post/{slug}/?canary-param=canary-value", {}, f"/post/{slug}/"),
        (f"/post/{slug}/?q=a&q=canary-q", {}, f"/post/{slug}/?q=a"),
        ("/account/canary.css", {}, "/"),
    ]
    for poisoned_path, headers, clean_path in cases:
        for _ in range(2):  # the first may render and store; the second may be served it
            poisoned = get(uvicorn_blog.url(poisoned_path), headers=headers)
            assert poisoned.status < 500, (poisoned_path, poisoned.status)
        clean = get(uvicorn_blog.url(clean_path))
        assert clean.status == 200, (clean_path, clean.status)
        assert not canaries_in(clean), (poisoned_path, clean.state, canaries_in(clean))
    # A Host that is not allowed is refused, never keyed or stored.
    bad_host = get(uvicorn_blog.url("/"), headers={"Host": "canary-host.example"})
    assert bad_host.status == 400
    clean = get(uvicorn_blog.url("/"))
    assert clean.status == 200 and not canaries_in(clean)
