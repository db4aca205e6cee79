"""How reads and writes are seen (ORM reads, model signals, SQL writes).

``install()`` is called once from ``FreshcacheConfig.ready()``; ``uninstall()`` undoes it.
"""

from __future__ import annotations


def install() -> None:
    """Start seeing ORM reads and writes (a no-op until capture lands)."""


def uninstall() -> None:
    """Stop seeing ORM reads and writes."""
