"""How reads and writes are seen: ORM queries at the SQL compiler, raw SQL at the connection,
Django's cache framework at its backends (``django_cache.py``).

``install()`` is called once from ``FreshcacheConfig.ready()``; ``uninstall()`` undoes it
exactly. The rules (which reads are precise, what each write bumps) are in ``reads.py``,
``writes.py`` and ``raw.py``; ``docs/capture.md`` explains them for users.
"""

from __future__ import annotations

__all__ = ["install", "uninstall"]


def install() -> None:
    """Start seeing ORM reads and writes, raw SQL run through Django's connections, and reads
    and writes through Django's cache framework."""
    from . import django_cache
    from .patch import patch

    patch()
    django_cache.patch()


def uninstall() -> None:
    """Stop seeing them."""
    from . import django_cache
    from .patch import unpatch

    unpatch()
    django_cache.unpatch()
