"""Writes made with autocommit off (``set_autocommit(False)`` and ``commit()``) are bumped after
their COMMIT, as inside ``atomic()`` (``freshcache/transactions.py``).

Django's ``on_commit`` refuses manual transaction management, and freshcache used to bump at
the write, before the COMMIT: a reader in between cached the old row under the new versions,
and it stayed stale until the next write (found by a break-it review; these tests fail on that
code). Each test reads from a second thread (its own connection) while the writer's
transaction is open, then checks what a request that starts after ``commit()`` returned gets.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import pytest
from django.db import IntegrityError, connection, connections, transaction
from django.db.transaction import TransactionManagementError
from django.test import override_settings

import freshcache
from blog.models import Author, Post
from freshcache import cached
from freshcache.log import relay
from tests.conftest import store_url

_serial = [0]


def title_of() -> Any:
    """A fresh ``@cached`` function of a post's title (a name per call: no entry shared)."""
    _serial[0] += 1

    @cached(name=f"test-manual-title-{_serial[0]}")
    def title(pk: int) -> str:
        return str(Post.objects.get(pk=pk).title)

    return title


def in_other_thread(fn: Callable[[], Any]) -> Any:
    """``fn()`` run on a thread of its own, hence a database connection of its own."""
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(fn())
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert result, "the reader thread failed (see its traceback above)"
    return result[0]


@pytest.fixture
def post(fresh_store: Any) -> Iterator[Post]:
    author = Author.objects.create(name="Ann", slug="ann")
    yield Post.objects.create(author=author, title="old", slug="old", body="")
    if not connection.get_autocommit():  # a failed test must not leave the connection manual
        connection.rollback()
        connection.set_autocommit(True)


def open_on_server(conn: Any) -> bool:
    """True if PostgreSQL holds a transaction open for ``conn`` (psycopg's status, not Django's)."""
    return conn.vendor == "postgresql" and conn.connection.info.transaction_status != 0


def _block(nested_atomic: bool) -> AbstractContextManager[Any]:
    return transaction.atomic() if nested_atomic else nullcontext()


@pytest.mark.parametrize("nested_atomic", [False, True], ids=["bare", "atomic-inside"])
def test_a_reader_during_a_manual_transaction_cannot_make_the_commit_stale(
    post: Post, store_kind: str, nested_atomic: bool
) -> None:
    """``atomic-inside``: an ``atomic()`` block in the manual transaction, whose ``on_commit``
    callbacks Django holds until autocommit is turned back on; the bump must not wait for it."""
    with override_settings(FRESHCACHE={"STORE": store_url(store_kind), "RELAY": False}):
        title = title_of()
        assert title(post.pk) == "old"
        transaction.set_autocommit(False)
        with _block(nested_atomic):
            Post.objects.filter(pk=post.pk).update(title="new")
        # A request on another connection, before the COMMIT: the committed row is "old".
        assert in_other_thread(lambda: title(post.pk)) == "old"
        assert in_other_thread(lambda: title.outcome(post.pk).hit), "the reader stored nothing"
        transaction.commit()
        # The bumps made after the COMMIT left no transaction open (the database store's own
        # would hold the tag rows' locks, and set_autocommit(True) would raise).
        assert not open_on_server(connection)
        # The write has returned: nothing built from the old row may be served.
        assert in_other_thread(lambda: title(post.pk)) == "new"
        transaction.set_autocommit(True)
        assert title(post.pk) == "new"


def test_a_rolled_back_manual_transaction_neither_stores_nor_bumps(
    post: Post, store_kind: str
) -> None:
    """Inside the transaction, a computation sees its own uncommitted row: it is answered but
    never stored (the transaction is dirty, as in ``atomic()``). After ``rollback()`` the entry
    built before it is still a hit: nothing was bumped, nothing is pending."""
    with override_settings(FRESHCACHE={"STORE": store_url(store_kind), "RELAY": False}):
        title = title_of()
        assert title(post.pk) == "old"
        transaction.set_autocommit(False)
        post.title = "draft"
        post.save(update_fields=["title"])
        inside = title.outcome(post.pk)
        assert inside.value == "draft" and not inside.hit
        transaction.rollback()
        assert in_other_thread(lambda: title(post.pk)) == "old"
        after = title.outcome(post.pk)
        assert after.value == "old" and after.hit, after
        # The connection is clean again: a computation is stored and hit.
        Post.objects.filter(pk=post.pk).update(title="next")
        transaction.commit()
        assert title(post.pk) == "next"
        assert title.outcome(post.pk).hit
        transaction.rollback()
        transaction.set_autocommit(True)


@pytest.mark.postgres
@pytest.mark.parametrize("store_kind", ["database", "redis"], indirect=True)
def test_a_commit_made_behind_djangos_back_is_applied_by_the_relay(
    post: Post, store_kind: str
) -> None:
    """The driver's own ``commit()`` runs no callback: the log row written in the transaction
    holds the invalidation, and the relay applies it (unmarked: no store bumped it)."""
    with override_settings(FRESHCACHE={"STORE": store_url(store_kind), "RELAY": False}):
        title = title_of()
        assert title(post.pk) == "old"
        relay.drain("default")
        transaction.set_autocommit(False)
        Post.objects.filter(pk=post.pk).update(title="new")
        assert in_other_thread(lambda: title(post.pk)) == "old"
        connection.connection.commit()  # psycopg's, not Django's
        rows, bumped, _ = relay.drain("default")
        assert rows >= 1 and bumped >= 1
        assert in_other_thread(lambda: title(post.pk)) == "new"
        transaction.rollback()  # nothing open; drops nothing that matters
        transaction.set_autocommit(True)


WEATHER = {"london": "rain"}


def test_a_hand_invalidation_with_autocommit_off_is_made_at_once(
    post: Post, store_kind: str
) -> None:
    """A request with autocommit off that only reads may never commit: ``invalidate()`` of a
    hand-named tag (data outside the database) must not wait for a COMMIT that never comes."""
    with override_settings(FRESHCACHE={"STORE": store_url(store_kind), "RELAY": False}):
        _serial[0] += 1

        @cached(name=f"test-manual-weather-{_serial[0]}")
        def weather(city: str) -> str:
            freshcache.depends_on(f"weather:{city}")
            return WEATHER[city]

        WEATHER["london"] = "rain"
        assert weather("london") == "rain"
        transaction.set_autocommit(False)
        assert Post.objects.filter(pk=post.pk).exists()  # the request has run a query
        WEATHER["london"] = "sun"
        freshcache.invalidate("weather:london")
        assert in_other_thread(lambda: weather("london")) == "sun"
        connection.close()  # the request ends without a COMMIT
        assert in_other_thread(lambda: weather("london")) == "sun"
        transaction.set_autocommit(True)
        # The closed transaction left no lasting mark: this thread caches again.
        assert weather("london") == "sun" and weather.outcome("london").hit


def test_a_refused_rollback_keeps_the_bumps_for_the_commit(post: Post, store_kind: str) -> None:
    """``rollback()`` inside ``atomic()`` raises and rolls nothing back: the write's bumps must
    still be made at the COMMIT."""
    with override_settings(FRESHCACHE={"STORE": store_url(store_kind), "RELAY": False}):
        title = title_of()
        assert title(post.pk) == "old"
        transaction.set_autocommit(False)
        Post.objects.filter(pk=post.pk).update(title="new")
        assert in_other_thread(lambda: title(post.pk)) == "old"
        with transaction.atomic(), pytest.raises(TransactionManagementError):
            transaction.rollback()
        transaction.commit()
        assert in_other_thread(lambda: title(post.pk)) == "new"
        transaction.set_autocommit(True)


@pytest.mark.postgres
@pytest.mark.parametrize("store_kind", ["redis"], indirect=True)
def test_a_cached_call_in_an_aborted_manual_transaction_is_answered(
    post: Post, store_kind: str
) -> None:
    """After a failed statement PostgreSQL refuses every query until ``rollback()``: a cached
    function that needs none still answers (uncached), as with autocommit on."""
    with override_settings(FRESHCACHE={"STORE": store_url(store_kind), "RELAY": False}):
        _serial[0] += 1

        @cached(name=f"test-manual-constant-{_serial[0]}")
        def constant() -> str:
            return "rain"

        transaction.set_autocommit(False)
        with pytest.raises(IntegrityError):
            Author.objects.create(name="Dup", slug="ann")  # the slug is taken: aborted
        out = constant.outcome()
        assert out.value == "rain" and not out.stored
        transaction.rollback()
        transaction.set_autocommit(True)


def test_two_threads_installing_the_commit_wrappers_never_wrap_a_wrapper(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the install lock, a thread could record another thread's wrapper as Django's
    ``rollback``, and every rollback of the process then recursed (a break-it review forced
    it 161 times in 3,000 races). Threads switch every microsecond here."""
    import sys

    from django.db.backends.base.base import BaseDatabaseWrapper

    from freshcache import transactions as tx

    names = ("commit", "rollback", "set_autocommit")
    django_own = {n: tx._originals.get(n, BaseDatabaseWrapper.__dict__[n]) for n in names}
    wrappers = {tx._commit, tx._rollback, tx._set_autocommit}
    before = dict(tx._originals)  # restored with the class's attributes (monkeypatch)
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(300):
            for n in names:
                monkeypatch.setattr(BaseDatabaseWrapper, n, django_own[n])
            tx._originals.clear()
            barrier = threading.Barrier(4)

            def install(barrier: threading.Barrier) -> None:
                barrier.wait()
                tx._install()

            threads = [threading.Thread(target=install, args=(barrier,)) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
            assert not wrappers & set(tx._originals.values()), tx._originals
            assert {n: tx._originals[n] for n in names} == django_own
    finally:
        sys.setswitchinterval(old_interval)
        tx._originals.clear()
        tx._originals.update(before)
