"""Open transactions, ``atomic()`` or manual, and running code right after their COMMIT.

Django's ``transaction.on_commit`` works inside ``atomic()`` only: with autocommit turned off
(``transaction.set_autocommit(False)``, or ``"AUTOCOMMIT": False`` in ``DATABASES``) and no
``atomic()`` block, Django raises ``TransactionManagementError``, and inside an ``atomic()``
block nested in such a transaction it holds the callbacks until autocommit is turned back on
(`Django's docs, "Use in autocommit mode and outside transactions"
<https://docs.djangoproject.com/en/stable/topics/db/transactions/#use-in-autocommit-mode-and-outside-transactions>`_).
A bump made at once there would land before the COMMIT: a reader could cache the rows the
transaction is replacing under the new tag versions, stale until the next write.

So in a *manual* transaction, :func:`on_commit` keeps the callback on the connection and runs
it inside ``connection.commit()``, right after the database committed and before ``commit()``
returns; ``rollback()`` drops it. ``BaseDatabaseWrapper.commit``, ``rollback`` and
``set_autocommit`` are wrapped for that, once, the first time a callback is kept (every
backend inherits them; SQLite commits when autocommit is turned back on, so that runs the
callbacks too). A transaction ended behind Django's back (the driver's own ``commit()``, a raw
``COMMIT``, a closed connection) runs nothing: the invalidation log row written in the
transaction is then applied by a relay, a moment later.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper

__all__ = ["in_manual_transaction", "in_transaction", "on_commit"]

logger = logging.getLogger("freshcache")

# On the connection wrapper: [(raw DB-API connection, callback, also on rollback), ...]
_PENDING = "_freshcache_after_commit"
_originals: dict[str, Callable[..., Any]] = {}


def in_manual_transaction(conn: Any) -> bool:
    """True if ``conn`` (a Django connection) is in a transaction it must ``commit()`` itself:
    autocommit is off and no ``atomic()`` block that commits on exit is open."""
    if conn.connection is None or conn.autocommit:
        return False
    return not (conn.in_atomic_block and conn.commit_on_exit)


def in_transaction(conn: Any) -> bool:
    """True if a statement run on ``conn`` now is part of a transaction not yet committed
    (``atomic()`` or manual), so that a failing statement would abort it on PostgreSQL."""
    return bool(conn.in_atomic_block) or in_manual_transaction(conn)


def on_commit(conn: Any, fn: Callable[[], Any], *, also_on_rollback: bool = False) -> None:
    """Run ``fn`` once ``conn``'s open transaction commits; at once if none is open.

    Inside ``atomic()`` this is Django's ``on_commit`` (robust: an exception is logged, never
    raised to the committer). In a manual transaction ``fn`` runs inside ``conn.commit()``,
    after the COMMIT; ``also_on_rollback`` runs it however the transaction ended (rolled back,
    its connection closed), at the next ``commit()`` or ``rollback()`` (to clear a flag)."""
    if in_manual_transaction(conn):
        _install()
        pending: list[tuple[Any, Callable[[], Any], bool]] = conn.__dict__.setdefault(_PENDING, [])
        pending.append((conn.connection, fn, also_on_rollback))
    elif conn.in_atomic_block:
        transaction.on_commit(fn, using=conn.alias, robust=True)
    else:
        fn()


def _run(conn: Any, committed: bool) -> bool:
    """Run (``committed``) or drop ``conn``'s kept callbacks; True if any were kept."""
    pending = conn.__dict__.pop(_PENDING, None)
    if not pending:
        return False
    for raw, fn, also_on_rollback in pending:
        # Kept under another DB-API connection: that one was closed (rolled back) since.
        if not (also_on_rollback or (committed and raw is conn.connection)):
            continue
        try:
            fn()
        except Exception:
            logger.exception("freshcache: a callback after a manual COMMIT failed")
    return True


def _commit(self: Any) -> None:
    _originals["commit"](self)
    if _run(self, committed=True) and not self.autocommit:
        # The callbacks' own statements (the database store's bump on this database) opened a
        # transaction on this connection: commit it, or it would hold the tag rows' locks until
        # the user's next COMMIT (and set_autocommit(True) would raise on PostgreSQL).
        try:
            _originals["commit"](self)
        except Exception:
            # Their log rows wait for a relay; the connection must not stay in a failed
            # transaction that would refuse the user's next statement.
            logger.exception("freshcache: committing the bumps made after a COMMIT failed")
            try:
                _originals["rollback"](self)
            except Exception:
                logger.debug("freshcache: rolling back the failed bumps failed too")


def _rollback(self: Any) -> None:
    try:
        _originals["rollback"](self)
    except Exception:
        if not self.in_atomic_block:  # refused inside atomic(): nothing was rolled back
            _run(self, committed=False)
        raise
    _run(self, committed=False)


def _set_autocommit(self: Any, autocommit: bool, *args: Any, **kwargs: Any) -> None:
    try:
        _originals["set_autocommit"](self, autocommit, *args, **kwargs)
    finally:
        # SQLite commits an open transaction here (elsewhere nothing is kept by now), and that
        # holds even when one of the on_commit callbacks Django runs here raised.
        if autocommit and self.autocommit:
            _run(self, committed=True)


_install_lock = threading.Lock()


def _install() -> None:
    if "set_autocommit" in _originals:  # the last one installed
        return
    with _install_lock:  # two threads must not both take a wrapper for the original
        if _originals:
            return
        for name, replacement in (
            ("commit", _commit),
            ("rollback", _rollback),
            ("set_autocommit", _set_autocommit),
        ):
            original = BaseDatabaseWrapper.__dict__[name]
            replacement.__doc__ = original.__doc__
            _originals[name] = original  # before the wrapper can be called
            setattr(BaseDatabaseWrapper, name, replacement)
