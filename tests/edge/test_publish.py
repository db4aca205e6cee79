"""Static publishing (issue 12 item 3): pages written for a real nginx (tests/edge/nginx.conf,
docs/edge.md's server block), deleted before a write returns, by the purge queue when the
writer could not, and never left stale by a render that raced a write."""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path
from typing import Any

import django
import pytest
import requests
from django.core.management import CommandError, call_command
from django.db import connection, connections
from django.test import override_settings

import freshcache
from freshcache.conf import get_settings
from freshcache.edge import publish as publishing
from freshcache.edge.publish import file_for
from tests.conftest import store_url
from tests.edge import examples
from tests.testapp.models import Item

pytestmark = pytest.mark.django_db(transaction=True)


def _settings(root: Path, **more: Any) -> dict[str, Any]:
    # The guide's example (docs/edge.md), with a temporary root.
    edge = {"PUBLISH": {**examples.PUBLISHED["EDGE"]["PUBLISH"], "ROOT": str(root)}}
    # Redis: a store every process shares, as a site with a web server in front has.
    return {"STORE": store_url("redis"), "HEADER": True, "EDGE": edge, **more}


#: Where the pages requested through the nginx fixture are written: its scheme and Host.
NGINX_SITE = "http/127.0.0.1"
#: Where ``manage.py freshcache publish --host testserver`` writes them.
COMMAND_SITE = "http/testserver"


def _published(base: str, path: str, root: Path) -> Path:
    """Request ``path`` until its file is written (a page is published when stored, and again
    on a hit while its file is missing: a purge queued by an earlier write may delete it)."""
    published = root / NGINX_SITE / file_for(path)  # type: ignore[operator]
    for _ in range(50):
        _get(base, path)
        if published.exists():
            return published
        time.sleep(0.05)
    raise AssertionError(f"{path} was never published")


def _queue_empty() -> None:
    """Wait until no purge is pending: none queued, and no log row left whose purges the relay
    would queue when it applies it (it deletes the row and queues them in one transaction, so
    one statement sees both or neither)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT (SELECT count(*) FROM freshcache_purge) "
                "+ (SELECT count(*) FROM freshcache_log)"
            )
            if cursor.fetchone()[0] == 0:
                return
        time.sleep(0.05)
    raise AssertionError("the purge queue and the log did not empty")


def _get(base: str, path: str) -> requests.Response:
    return requests.get(base + path, timeout=10)


def test_paths_map_to_files_and_odd_ones_are_refused() -> None:
    assert file_for("/") == "index.html"
    assert file_for("/post/7/") == "post/7/index.html"
    for path in ("/post/7", "/../etc/", "/a/../b/", "/.git/", "/a//b/", "/a\\b/", "post/"):
        assert file_for(path) is None, path


def test_nginx_serves_the_file_and_a_write_deletes_it_before_it_returns(
    nginx: tuple[str, Path],
) -> None:
    base, root = nginx
    item = Item.objects.create(name="a", value=1)
    path = f"/post/{item.pk}/"
    with override_settings(FRESHCACHE=_settings(root), ROOT_URLCONF="tests.edge.views"):
        freshcache.store().clear()
        first = _get(base, path)
        assert first.text == "1" and first.headers["X-Freshcache"] == "miss"
        published = _published(base, path, root)
        assert published.read_text() == "1"
        from_file = _get(base, path)
        assert from_file.text == "1" and "X-Freshcache" not in from_file.headers  # nginx's
        assert _get(base, path + "?x=1").headers["X-Freshcache"].startswith(("miss", "bypass"))

        Item.objects.filter(pk=item.pk).update(value=2)
        assert not published.exists()  # before the write returned
        again = _get(base, path)
        assert again.text == "2" and again.headers["X-Freshcache"] == "miss"
        assert _published(base, path, root).read_text() == "2"

        _queue_empty()  # the queue's purge of the same write may delete the new file too
        assert _published(base, path, root).read_text() == "2"  # a hit publishes it again
        out = io.StringIO()
        call_command("freshcache", "clear", stdout=out)
        assert "published files: 1 deleted" in out.getvalue() and not published.exists()


def test_readers_through_nginx_never_get_a_page_older_than_a_returned_write(
    nginx: tuple[str, Path],
) -> None:
    base, root = nginx
    item = Item.objects.create(name="b", value=0)
    path = f"/post/{item.pk}/"
    returned = [0]
    stale: list[tuple[int, str, str | None]] = []
    served_by_nginx = [0]
    done = threading.Event()

    def reader() -> None:
        session = requests.Session()
        while not done.is_set():
            before = returned[0]
            response = session.get(base + path, timeout=10)
            if "X-Freshcache" not in response.headers:
                served_by_nginx[0] += 1
            if int(response.text) < before:
                stale.append((before, response.text, response.headers.get("X-Freshcache")))

    with override_settings(FRESHCACHE=_settings(root), ROOT_URLCONF="tests.edge.views"):
        readers = [threading.Thread(target=reader) for _ in range(3)]
        for thread in readers:
            thread.start()
        try:
            for value in range(1, 61):
                time.sleep(0.01)
                if value % 10 == 0:  # let the file be re-published and served between writes
                    seen, deadline = served_by_nginx[0], time.monotonic() + 5
                    while served_by_nginx[0] == seen and time.monotonic() < deadline:
                        time.sleep(0.01)
                Item.objects.filter(pk=item.pk).update(value=value)
                returned[0] = value
        finally:
            done.set()
            for thread in readers:
                thread.join(30)
    assert not stale, stale[:5]
    assert served_by_nginx[0] > 0  # the files were used, not only Django


def test_a_write_the_writer_could_not_unpublish_is_unpublished_by_the_queue(
    nginx: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, root = nginx
    item = Item.objects.create(name="c", value=1)
    path = f"/post/{item.pk}/"
    with override_settings(FRESHCACHE=_settings(root), ROOT_URLCONF="tests.edge.views"):
        assert _get(base, path).text == "1"
        published = _published(base, path, root)
        monkeypatch.setattr(publishing, "unpublish", lambda tags: 0)  # the writer "died"
        Item.objects.filter(pk=item.pk).update(value=2)
        assert published.exists()
        monkeypatch.undo()
        deadline = time.monotonic() + 20
        while published.exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # the relay queues the keys, the worker's Files purger deletes
        assert not published.exists()
        assert _get(base, path).text == "2"


def test_a_write_from_outside_django_unpublishes_through_the_log(nginx: tuple[str, Path]) -> None:
    base, root = nginx
    if connection.vendor != "postgresql":
        pytest.skip("triggers log outside writes on PostgreSQL only")
    item = Item.objects.create(name="d", value=1)
    path = f"/post/{item.pk}/"
    with override_settings(FRESHCACHE=_settings(root), ROOT_URLCONF="tests.edge.views"):
        assert _get(base, path).text == "1"
        published = _published(base, path, root)
        table = Item._meta.db_table
        with connections["default"].cursor() as cursor:  # as psql would: no ORM
            cursor.execute(f'UPDATE "{table}" SET value = 5 WHERE id = %s', [item.pk])
        deadline = time.monotonic() + 20
        while published.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not published.exists()
        assert _get(base, path).text == "5"


def test_pages_for_one_visitor_are_not_published(nginx: tuple[str, Path]) -> None:
    base, root = nginx
    urls = [r"^/t/"]
    with override_settings(FRESHCACHE={**_settings(root), "EDGE": {"PUBLISH": {
            "ROOT": str(root), "URLS": urls}}}, ROOT_URLCONF="tests.edge.views"):  # fmt: skip
        for path in ("/t/form/", "/t/cookie/", "/t/who/", "/t/per-user/", "/t/lang/",
                     "/t/variant/", "/t/echo/?q=1", "/t/plain/"):  # fmt: skip
            for _ in range(2):
                assert requests.get(base + path, timeout=10).status_code == 200, path
        written = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        # The control: a page the same for everyone.
        assert written == [f"{NGINX_SITE}/t/plain/index.html"]


def test_a_render_that_raced_a_write_leaves_no_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with override_settings(FRESHCACHE=_settings(root)):
        using = get_settings().log_database
        store = freshcache.store()
        # An entry that is no longer valid (never stored): the publisher finds it gone after
        # the rename and deletes what it wrote.
        written = publishing._publish(str(root), "post/9/index.html", b"old", {"t:x"},
                                      "no-such-key", store, using)  # fmt: skip
        assert written is None
        assert not (root / "post/9/index.html").exists()
        assert [p.name for p in (root / "post/9").iterdir()] == []  # no temporary file left


def test_the_publish_command_prerenders_with_a_progress_bar(tmp_path: Path) -> None:
    root = tmp_path / "root"
    a = Item.objects.create(name="e", value=7)
    with override_settings(FRESHCACHE=_settings(root), ROOT_URLCONF="tests.edge.views",
                           ALLOWED_HOSTS=["testserver"]):  # fmt: skip
        out = io.StringIO()
        call_command("freshcache", "publish", f"/post/{a.pk}/", "/e/rows/3/",
                     "--host", "testserver", stdout=out)  # fmt: skip
        text = out.getvalue()
        assert f"1/2 /post/{a.pk}/: published" in text
        assert "2/2 /e/rows/3/: served" in text and "1 of 2 page(s) published" in text
        assert (root / COMMAND_SITE / f"post/{a.pk}/index.html").read_text() == "7"
    with override_settings(FRESHCACHE={"STORE": "memory://"}), pytest.raises(
        CommandError, match="PUBLISH"
    ):
        call_command("freshcache", "publish", "/", stdout=io.StringIO())


def test_a_page_that_read_the_method_is_published(tmp_path: Path) -> None:
    # @require_safe reads request.method: the page holds for GET only, a condition the file
    # meets (nginx serves it to GET and HEAD without a query string, as Varnish serves HEAD
    # from a GET page). The example blog's front page is such a page; it was never published.
    root = tmp_path / "root"
    a = Item.objects.create(name="f", value=8)
    publishing = {"EDGE": {"PUBLISH": {"ROOT": str(root), "URLS": [r"^/safe/"]}}}
    with override_settings(FRESHCACHE={**_settings(root), **publishing},
                           ROOT_URLCONF="tests.edge.views",
                           ALLOWED_HOSTS=["testserver"]):  # fmt: skip
        freshcache.store().clear()
        out = io.StringIO()
        call_command("freshcache", "publish", f"/safe/{a.pk}/", "--host", "testserver",
                     stdout=out)  # fmt: skip
        assert "1 of 1 page(s) published" in out.getvalue(), out.getvalue()
        published = root / COMMAND_SITE / f"safe/{a.pk}/index.html"
        assert published.read_text() == "8"
        Item.objects.filter(pk=a.pk).update(value=9)
        assert not published.exists()  # and a write still deletes it before it returns


def test_settings_mistakes_are_named() -> None:
    from freshcache.conf.publish import read_publish

    problems: list[str] = []
    assert read_publish({"ROOT": "relative", "URLS": ["("], "X": 1}, problems.append) is None
    assert problems == [
        "['PUBLISH'] has an unknown key 'X'; it understands ROOT, URLS, RERENDER",
        "['PUBLISH']['ROOT'] must be an absolute directory, not 'relative'",
        "['PUBLISH']['URLS'] has '(', which is not a regular expression: missing ), "
        "unterminated subpattern at position 0",
    ]
    assert os.path.isabs(examples.PUBLISHED["EDGE"]["PUBLISH"]["ROOT"])


def test_rerender_writes_the_page_again_after_a_write_without_a_request(
    nginx: tuple[str, Path],
) -> None:
    base, root = nginx
    item = Item.objects.create(name="g", value=1)
    path = f"/post/{item.pk}/"
    settings = _settings(root)
    settings["EDGE"]["PUBLISH"]["RERENDER"] = True
    with override_settings(FRESHCACHE=settings, ROOT_URLCONF="tests.edge.views",
                           ALLOWED_HOSTS=["testserver", "127.0.0.1"]):  # fmt: skip
        published = _published(base, path, root)
        Item.objects.filter(pk=item.pk).update(value=2)
        assert not published.exists() or published.read_text() == "2"  # never the old page
        deadline = time.monotonic() + 20
        while not (published.exists() and published.read_text() == "2"):
            assert time.monotonic() < deadline, "the page was not rendered again"
            time.sleep(0.05)
        served = _get(base, path)
        assert served.text == "2" and "X-Freshcache" not in served.headers  # nginx's file


@pytest.mark.skipif(django.VERSION < (6, 0), reason="django.tasks arrived in Django 6.0")
def test_rerender_is_a_task_when_tasks_queue_work(tmp_path: Path) -> None:
    from django.tasks import default_task_backend

    root = tmp_path / "root"
    item = Item.objects.create(name="h", value=1)
    settings = _settings(root)
    settings["EDGE"]["PUBLISH"]["RERENDER"] = True
    tasks = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}
    with override_settings(FRESHCACHE=settings, ROOT_URLCONF="tests.edge.views", TASKS=tasks,
                           ALLOWED_HOSTS=["testserver"]):  # fmt: skip
        call_command("freshcache", "publish", f"/post/{item.pk}/", stdout=io.StringIO())
        assert (root / COMMAND_SITE / f"post/{item.pk}/index.html").exists()
        Item.objects.filter(pk=item.pk).update(value=2)
        results = default_task_backend.results  # type: ignore[attr-defined]
        assert [(r.task.name, r.args) for r in results] == [
            ("rerender", [[f"/post/{item.pk}/"], "testserver", False])
        ]


def test_concurrent_publishers_and_a_writer_never_deadlock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two publishers of one path used to each hold their own index rows and delete the
    other's: a deadlock, whose victim could be the writer's deletion (found in CI: the file of
    a returned write stayed until the queue's retry). Rows are now locked in one order."""
    root = tmp_path / "root"
    monkeypatch.setattr(publishing, "_still_current", lambda store, key, body: True)
    errors: list[BaseException] = []
    logged: list[str] = []
    monkeypatch.setattr(publishing.logger, "exception", lambda msg, *a: logged.append(msg % a))
    with override_settings(FRESHCACHE=_settings(root)):
        using = get_settings().log_database
        store = freshcache.store()
        tags = {f"t:{n}" for n in range(40)}  # many index rows per publication

        def publisher(n: int) -> None:
            try:
                for i in range(15):
                    publishing._publish(str(root), "post/9/index.html", f"{n}-{i}".encode(),
                                        tags, "key", store, using)  # fmt: skip
            except BaseException as exc:
                errors.append(exc)
            finally:
                connections.close_all()

        def writer() -> None:
            try:
                for _ in range(15):
                    publishing.unpublish(["t:7"])
            finally:
                connections.close_all()

        threads = [threading.Thread(target=publisher, args=(n,)) for n in range(3)]
        threads.append(threading.Thread(target=writer))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors[:3]
        assert not logged, logged[:3]
        publishing.unpublish(["t:7"])
        assert not (root / "post/9/index.html").exists()
