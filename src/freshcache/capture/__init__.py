"""How reads and writes are seen: ORM queries at the SQL compiler, raw SQL at the connection.

``install()`` is called once from ``FreshcacheConfig.ready()``; ``uninstall()`` undoes it
exactly. The rules (which reads are precise, what each write bumps) are in ``reads.py``,
``writes.py`` and ``raw.py``; ``docs/capture.md`` explains them for users.
"""

from __future__ import annotations

__all__ = ["install", "uninstall"]


def install() -> None:
    """Start seeing ORM reads and writes, and raw SQL run through Django's connections."""
    from .patch import patch

    patch()


def uninstall() -> None:
    """Stop seeing ORM reads and writes."""
    from .patch import unpatch

    unpatch()
