"""The example blog's cache badge: what a visitor sees in the corner of each page, through the
demo's own middleware and settings, after a real comment is posted."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client, override_settings

import freshcache
from blog.models import Post
from freshcache.log import reset, triggers
from mysite import settings as demo

STYLE = Path(demo.BASE_DIR) / "blog" / "static" / "blog" / "style.css"


@pytest.fixture
def blog(transactional_db: None) -> Iterator[Client]:
    """The demo's middleware and freshcache settings, on an empty memory store, seeded."""
    with override_settings(
        MIDDLEWARE=demo.MIDDLEWARE,
        FRESHCACHE={**demo.FRESHCACHE, "STORE": "memory://"},
    ):
        freshcache.store().clear()
        # The log triggers as `freshcache changefeed install` writes them for these settings:
        # installed for the suite's, they logged the view counter's UPDATE (a volatile field
        # here), and the relay invalidated the post on every view.
        reset()
        triggers.install()
        try:
            call_command("seed_blog", "--posts", "4", "--comments-per-post", "2", "--no-admin")
            yield Client()
        finally:
            freshcache.store().clear()
    reset()
    triggers.install()


def badge(response: object) -> dict[str, str]:
    """The badge's lines as a visitor reads them (tags and the ``why`` hint apart)."""
    text = response.content.decode()  # type: ignore[attr-defined]
    found = re.search(r'<aside class="cache-badge cache-(\w+)".*?</aside>', text, re.S)
    assert found, "no badge"

    def line(cls: str) -> str:
        opening = f'<p class="{cls}">' if cls else "<p>"
        match = re.search(re.escape(opening) + "(.*?)</p>", found[0], re.S)
        raw = match[1] if match else ""
        return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", raw))).strip()

    tags = re.search(r'<details class="cache-tags">.*?<code>(.*?)</code>', found[0], re.S)
    return {
        "class": found[1],
        "state": line(""),
        "inside": line("cache-inside"),
        "tags": tags[1] if tags else "",
        "why": line("cache-why"),
        "position": str(text.index("<aside") < text.index('<header class="site-header"')),
    }


def test_the_badge_shows_hit_miss_tags_and_how_to_ask_why(blog: Client) -> None:
    post = Post.objects.order_by("pk")[0]
    url = post.get_absolute_url()

    first = badge(blog.get(url))
    assert first["class"] == "miss"
    assert first["state"] == "miss rendered and stored"
    assert first["inside"] == "Inside: fragment post-article miss, fragment post-comments miss"
    assert f"blog.post:{post.pk}" in first["tags"].split()
    assert first["why"] == f"Why did it change? python manage.py freshcache why {url}"
    assert first["position"] == "True"  # first in the body, before the header

    second = badge(blog.get(url))
    assert (second["class"], second["state"], second["inside"]) == (
        "hit", "hit served from the cache", ""
    )
    assert second["tags"] == first["tags"]
    assert badge(blog.get("/"))["class"] == "miss"

    other = Post.objects.order_by("pk")[1].get_absolute_url()
    Client().get(other)
    assert badge(Client().get(other))["class"] == "hit"

    posted = Client().post(url, {"author_name": "Ada", "body": "Fresh at once?"})
    assert posted.status_code == 302

    # The walkthrough of example/README.md: this post's page (its comments fragment) and the
    # front page refresh, another post's page stays a hit. Read by a new visitor, as the
    # README's curl commands do.
    blog = Client()
    after = badge(blog.get(url))
    assert after["class"] == "miss"
    assert after["inside"] == "Inside: fragment post-article hit, fragment post-comments miss"
    assert badge(blog.get("/"))["class"] == "miss"
    assert badge(Client().get(other))["class"] == "hit"  # another post's page


def test_the_badge_sits_in_a_fixed_corner() -> None:
    rule = re.search(r"\.cache-badge \{(.*?)\}", STYLE.read_text(), re.S)
    assert rule and "position: fixed;" in rule[1] and "bottom: 1rem;" in rule[1]
