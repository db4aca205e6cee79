"""Freshness over real HTTP: the example blog under gunicorn with 2 worker processes.

Run once on the Redis store and once on the database store (both shared by the workers). After a
write has returned (a comment posted through the form, a post edited in the admin, a
``QuerySet.update()`` in a separate ``manage.py shell`` process), every GET that starts
afterwards, from either worker, shows it: the first one included.
"""

from __future__ import annotations

import html
import time
import uuid

import pytest
import requests

from .client import Got, form_fields, get, get_many, replace_field
from .conftest import Blog, manage

pytestmark = [pytest.mark.postgres]

ROUNDS = 8  # at most this many rounds of BATCH concurrent GETs to hear from both workers
BATCH = 8


def from_both_workers(url: str, want: str | None = None, hits: bool = False) -> list[Got]:
    """GET ``url`` over new connections until both workers have answered; every response
    must be a 200 containing ``want``. With ``hits``, go on until each worker served a hit."""
    seen: list[Got] = []
    for _ in range(ROUNDS):
        batch = get_many([url] * BATCH, concurrency=4)
        for got in batch:
            assert got.status == 200, (got.status, got.text[:500])
            if want is not None:
                assert want in got.text, f"stale page from worker {got.pid} ({got.state})"
        seen += batch
        pids = {g.pid for g in seen}
        hit_pids = {g.pid for g in seen if g.state == "hit"}
        if len(pids) >= 2 and (not hits or len(hit_pids) >= 2):
            return seen
    pytest.fail(f"both workers did not answer in {ROUNDS * BATCH} GETs: {pids}, hits {hit_pids}")


def first_then_all(url: str, want: str) -> None:
    """The first GET after the write, then GETs from both workers: all show ``want``."""
    first = get(url)
    assert first.status == 200
    assert want in first.text, f"the first GET after the write was stale ({first.state})"
    from_both_workers(url, want)


def post_for(blog: Blog, index: int) -> tuple[int, str, str]:
    return blog.posts[index % len(blog.posts)]


def test_comment_from_a_cached_page_shows_on_every_worker(gunicorn_blog: Blog) -> None:
    _, slug, _ = post_for(gunicorn_blog, 1)
    _, other_slug, _ = post_for(gunicorn_blog, 2)
    url = gunicorn_blog.url(f"/post/{slug}/")
    other = gunicorn_blog.url(f"/post/{other_slug}/")
    from_both_workers(url, hits=True)
    from_both_workers(other, hits=True)

    browser = requests.Session()
    page = browser.get(url, timeout=15)
    assert page.headers["X-Freshcache"].startswith("hit"), "the form comes from a cached page"
    fields = dict(form_fields(page.text))
    body = f"A comment {uuid.uuid4().hex}"
    posted = browser.post(
        url,
        data={"csrfmiddlewaretoken": fields["csrfmiddlewaretoken"], "author_name": "E2E",
              "body": body},
        timeout=15,
        allow_redirects=False,
    )  # fmt: skip
    assert posted.status_code == 302, posted.text[:2000]
    first_then_all(url, html.escape(body))
    # Another post's page did not depend on this comment: still a hit on every worker.
    for got in from_both_workers(other):
        assert got.state == "hit", f"{other} was invalidated by a comment on another post"


def admin_session(blog: Blog) -> requests.Session:
    browser = requests.Session()
    login = browser.get(blog.url("/admin/login/?next=/admin/"), timeout=15)
    fields = replace_field(form_fields(login.text, "login-form"), "username", "admin")
    fields = replace_field(fields, "password", "admin")
    done = browser.post(login.url, data=fields, timeout=15, allow_redirects=False)
    assert done.status_code == 302, "admin login failed"
    return browser


def test_admin_edit_shows_on_every_worker(gunicorn_blog: Blog) -> None:
    pk, slug, _ = post_for(gunicorn_blog, 3)
    url = gunicorn_blog.url(f"/post/{slug}/")
    from_both_workers(url, hits=True)
    browser = admin_session(gunicorn_blog)
    change = gunicorn_blog.url(f"/admin/blog/post/{pk}/change/")
    form = browser.get(change, timeout=15)
    assert form.status_code == 200
    title = f"Edited in the admin {uuid.uuid4().hex[:12]}"
    fields = replace_field(form_fields(form.text, "post_form"), "title", title)
    saved = browser.post(change, data=[*fields, ("_save", "Save")], timeout=15,
                         allow_redirects=False)  # fmt: skip
    assert saved.status_code == 302, saved.text[:3000]
    first_then_all(url, f"<h1>{title}</h1>")
    first_then_all(gunicorn_blog.url("/"), title)  # the front page lists it


def test_queryset_update_in_another_process_shows_on_every_worker(gunicorn_blog: Blog) -> None:
    pk, slug, _ = post_for(gunicorn_blog, 4)
    url = gunicorn_blog.url(f"/post/{slug}/")
    from_both_workers(url, hits=True)
    title = f"Updated from a shell {uuid.uuid4().hex[:12]}"
    code = (
        "from blog.models import Post; "
        f"assert Post.objects.filter(pk={pk}).update(title={title!r}) == 1"
    )
    started = time.monotonic()
    manage("shell", "-c", code, store=gunicorn_blog.store)
    assert time.monotonic() - started < 60
    first_then_all(url, f"<h1>{title}</h1>")


def test_view_count_does_not_invalidate(gunicorn_blog: Blog) -> None:
    """Every GET bumps ``view_count`` (a volatile field): pages stay hits, the count moves."""
    _, slug, _ = post_for(gunicorn_blog, 5)
    url = gunicorn_blog.url(f"/post/{slug}/")
    from_both_workers(url, hits=True)
    counts = []
    for got in [get(url) for _ in range(6)]:
        assert got.state == "hit"
        counts.append(int(got.text.split("Views: ", 1)[1].split("<", 1)[0]))
    assert counts == sorted(counts) and len(set(counts)) == len(counts), counts
