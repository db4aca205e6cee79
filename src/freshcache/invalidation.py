"""``invalidate()``: bump tags now, or when the surrounding transaction commits.

Inside ``transaction.atomic()`` the bump is deferred with ``transaction.on_commit`` (so a
rolled-back block, savepoints included, bumps nothing; with autocommit off, to
``connection.commit()``, see ``transactions.py``) and the transaction is marked *dirty*:
until it ends, cached computations run inside it are neither served from the cache nor stored,
because they may read rows no other transaction can see yet (Drupal's delayed-tags rule).
Stores that live in the same database are additionally bumped inside the transaction (see
``stores/database.py``). The bump has reached every store when ``invalidate()`` — or the commit
of the block it ran in — returns; that is the moment the freshness contract counts from.

Every invalidation is also in the invalidation log (``log/``), committed with the write: written
by the database triggers, or here, in the writing transaction, when no trigger covers it. A bump
that fails (a store unreachable from this process, the breaker notwithstanding) is therefore
never lost: a relay applies the log row once the store answers, and meanwhile this process
serves nothing from the stores (``log/relay.py``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Iterable
from functools import partial
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

from . import counters, events, hooks, log, watermark
from . import transactions as tx
from .conf import get_settings
from .stores import all_stores
from .tags import Taggable, tags_for

__all__ = ["in_dirty_transaction", "invalidate", "invalidate_tags"]

logger = logging.getLogger("freshcache")

_DIRTY = "_freshcache_dirty"

# Connections of this thread that are marked dirty. Django's connections are per thread, so a
# thread-local set lets the hit path answer "is anything dirty?" without touching them.
_local = threading.local()


def _mark_dirty(conn: Any) -> None:
    setattr(conn, _DIRTY, True)
    dirty: set[Any] | None = getattr(_local, "conns", None)
    if dirty is None:
        dirty = _local.conns = set()
    dirty.add(conn)


def invalidate(*items: Taggable, using: str | None = None) -> None:
    """Invalidate everything cached from these model instances, model classes or tags.

    ``invalidate(post)`` (one row), ``invalidate(Post)`` (the whole table),
    ``invalidate("weather:london")`` (a hand-named tag). ``using`` is the database whose
    transaction decides when the bump happens; by default each instance's own database, and
    ``default`` for tags and model classes.
    """
    if using is not None:
        invalidate_tags(_tags(items), using=using, source="invalidate")
        return
    # Each instance's tags follow its own database's transaction: a bump deferred to the
    # commit of the wrong connection could land before the write it stands for commits.
    groups: dict[str, list[Taggable]] = {}
    for item in items:
        db = getattr(getattr(item, "_state", None), "db", None) or DEFAULT_DB_ALIAS
        groups.setdefault(db, []).append(item)
    for db, group in groups.items():
        invalidate_tags(_tags(group), using=db, source="invalidate")


def _tags(items: Collection[Taggable]) -> set[str]:
    """The tags of ``items``, widened so that every reader of that data is reached.

    A model class is its whole table: the table tag and every keyed column's wildcard (a reader
    that filtered ``author_id=7`` depends on ``blog.post?author_id=7`` and the wildcard, not on
    the table tag). An instance is its row: its instance tag and the predicate tags of its keyed
    columns' current values, so the listings that show it miss too.
    """
    from django.db import models

    from .capture.tables import registry

    tags = tags_for(items)
    reg = registry()
    for item in items:
        if isinstance(item, type) and issubclass(item, models.Model):
            info = reg.tables.get((item._meta.concrete_model or item)._meta.db_table)
            if info is not None:
                tags |= info.all_wildcards(None)
        elif isinstance(item, models.Model) and item.pk is not None:
            concrete = item._meta.concrete_model or type(item)
            info = reg.tables.get(concrete._meta.db_table)
            if info is None:
                continue
            db = item._state.db
            for column, kc in info.keyed.items():
                try:
                    value = kc.normalize(getattr(item, kc.field.attname))
                    tags.add(info.tag(column, value, db))
                except (AttributeError, TypeError, ValueError):
                    tags.add(info.wildcard(column, db))
    return tags


def invalidate_tags(
    tags: Iterable[str],
    using: str | None = None,
    *,
    marks: Collection[int] = (),
    logged: bool = False,
    now: bool = False,
    source: str = "write",
) -> None:
    """Bump already-named tags, deferring to the commit of ``using``'s open transaction.

    ``marks``: ids of the log rows these tags apply; ``logged``: the database triggers logged
    this write already. Otherwise, when the log is on, a row is added for the tags.

    ``now``: the write is not transactional (a write through Django's cache framework: it is
    visible to every process already, and a rollback would not undo it), so bump immediately
    whatever transaction is open, and do not mark that transaction dirty. A failed bump is
    logged in a transaction of its own (a rollback of the caller's must not lose it).

    ``source``: what asked for it, as outcome listeners see it (``events.Invalidation``).
    """
    tags = frozenset(tags)
    if not tags and not marks:
        return
    using = using or DEFAULT_DB_ALIAS
    conn = connections[using]
    if now:
        # With edge purgers, a row even when the bump succeeded (unmarked: the relay bumps once
        # more, one extra miss per write through Django's cache).
        if (_bump_now(tags, marks) or _purges_need_row(using)) and log.is_active(using):
            _log_outside_transaction(tags, using)
        return
    if not tags:  # log rows that need no bump (a volatile-only write): only mark them
        tx.on_commit(conn, lambda: _bump_all(tags, marks, using))
        return
    if tx.in_transaction(conn):  # atomic(), or autocommit off (transactions.py)
        _mark_dirty(conn)
        if not logged and log.is_active(using):
            row = log.write_row(tags, using)
            marks = (*marks, row) if row is not None else marks
        if source == "invalidate" and tx.in_manual_transaction(conn):
            # A hand invalidate() with autocommit off: bump now too, committed now. A request
            # that only reads may never commit, and a hand-named tag's data (outside the
            # database) has changed already. The bump after the COMMIT drops what was stored
            # in between from rows the transaction wrote.
            _bump_now(tags, (), source)
        else:
            for store in all_stores():
                if store.bumps_in_transaction(using):
                    # No marks inside the transaction: its version is handed out before
                    # COMMIT, so the post-commit bump (or a relay) must still happen.
                    _bump(store, tags, ())
        tx.on_commit(conn, partial(_bump_all, tags, marks, using, source))
        tx.on_commit(conn, lambda: setattr(conn, _DIRTY, False), also_on_rollback=True)
    else:
        if not logged and not marks and _purges_need_row(using):
            row = log.write_row(tags, using)
            marks = (row,) if row is not None else marks
        failed = _bump_all(tags, marks, using, source)
        if failed and not logged and not marks and log.is_active(using):
            # Nothing durable holds this invalidation yet: log it now for the relays.
            log.write_row(tags, using)


def _purges_need_row(using: str) -> bool:
    """True when edge purgers are configured: they learn of invalidations only from the log
    (issue 12), so a bump outside a transaction, which needs no row for the stores, logs one
    too (committed before the bump, marked by it)."""
    return bool(get_settings().edge.purgers) and log.is_active(using)


def _bump_all(
    tags: Collection[str], marks: Collection[int] = (), using: str = "", source: str = "write"
) -> bool:
    """Bump every store; return True if one of them failed (the relay then takes over)."""
    hooks.run("before_bump", tags=tags)
    failed = False
    for store in all_stores():
        failed = not _bump(store, tags, marks) or failed
    if failed:
        from .log import relay

        relay.note_failed_bump()
    watermark.bumped()
    _unpublish(tags)
    if events.listening:
        events.invalidated(frozenset(tags), source, failed)
    return failed


def _unpublish(tags: Collection[str]) -> None:
    """Delete the published files of ``tags`` before the write returns (``edge/publish.py``;
    the purge queue deletes them if this fails or the process dies first)."""
    if get_settings().edge.publish is not None:
        from .edge.publish import unpublish

        unpublish(tags)


def _bump_now(tags: Collection[str], marks: Collection[int], source: str = "cache") -> bool:
    """Bump every store now, committed now, whatever transaction this thread has open; return
    True if one failed.

    A store that bumps inside an open transaction (the database store on that database) would
    make the bump part of the caller's transaction: invisible until COMMIT, undone by a
    rollback. Its bump runs on a connection of its own instead (a short-lived thread). On
    SQLite that connection would wait for the caller's write lock, so the bump is made in the
    caller's transaction and again after its COMMIT; a rollback there loses it
    (docs/limits.md).
    """
    hooks.run("before_bump", tags=tags)
    failed = False
    for store in all_stores():
        alias = _open_transaction_of(store)
        if alias is None:
            ok = _bump(store, tags, marks)
        elif connections[alias].vendor == "sqlite":
            ok = _bump(store, tags, ())
            tx.on_commit(connections[alias], partial(_bump, store, tags, marks))
        else:
            ok = _outside_transaction(partial(_bump, store, tags, marks), alias)
        failed = not ok or failed
    if failed:
        from .log import relay

        relay.note_failed_bump()
    watermark.bumped()
    _unpublish(tags)
    if events.listening:
        events.invalidated(frozenset(tags), source, failed)
    return failed


def _open_transaction_of(store: object) -> str | None:
    """The alias of an open transaction of this thread that ``store`` would bump inside."""
    for conn in connections.all(initialized_only=True):
        if tx.in_transaction(conn) and store.bumps_in_transaction(conn.alias):  # type: ignore[attr-defined]
            return str(conn.alias)
    return None


def _outside_transaction(fn: Any, using: str) -> bool:
    """Run ``fn`` (returning True on success) on a connection of its own to ``using``, in
    autocommit mode, and return its result; False if it raised (logged)."""
    result: list[bool] = []

    def run() -> None:
        try:
            result.append(bool(fn()))
        except Exception:
            logger.exception("freshcache: an invalidation outside the transaction failed")
        finally:
            connections[using].close()

    thread = threading.Thread(target=run, name="freshcache-outside-transaction", daemon=True)
    thread.start()
    thread.join()
    return bool(result and result[0])


def _bump(store: object, tags: Collection[str], marks: Collection[int]) -> bool:
    try:
        store.bump(tags, marks)  # type: ignore[attr-defined]
    except Exception as exc:  # StoreUnavailable, or anything unforeseen: never the caller's
        # The log row stays until a relay applies it (and, without a log, the store replays it).
        counters.incr("bump_failures")
        logger.debug("freshcache: bump of %d tag(s) on %r failed: %s", len(tags), store, exc)
        return False
    counters.incr("bumps")
    return True


def _log_outside_transaction(tags: Collection[str], using: str) -> None:
    """Write a log row for ``tags`` that commits now, whatever transaction this thread has open.

    Django's connections belong to their thread: a short-lived thread gets a connection of its
    own, in autocommit mode. Only reached after a failed bump (the store is down), so the cost
    of a new connection is paid rarely.
    """
    if not tx.in_transaction(connections[using]):
        log.write_row(tags, using)
        return

    def write() -> bool:
        log.write_row(tags, using)
        return True

    if connections[using].vendor == "sqlite":
        # Another connection would wait for this transaction's write lock: log in it instead
        # (a rollback loses the row; docs/limits.md).
        log.write_row(tags, using)
        return
    _outside_transaction(write, using)


def in_dirty_transaction() -> bool:
    """True if an open transaction of this thread has written through freshcache's view."""
    dirty: set[Any] | None = getattr(_local, "conns", None)
    if not dirty:
        return False
    for conn in list(dirty):
        if getattr(conn, _DIRTY, False) and tx.in_transaction(conn):
            return True
        # Committed (flag cleared) or ended without commit (rolled back): clean again.
        setattr(conn, _DIRTY, False)
        dirty.discard(conn)
    return False
