"""``READ_REPLICAS``: database aliases that read a replica of another alias (docs/scaling.md).

``{"replica": "default"}``: the alias ``replica`` reads a streaming replica of ``default``.
Reads through it are tagged as reads of ``default`` (a write on ``default`` invalidates them),
and a computation that read it is stored only if the replica had replayed every write committed
on ``default`` before the computation began (``capture/replicas.py``).
"""

from __future__ import annotations

from django.conf import settings as django_settings

from .readers import Reader, did_you_mean

__all__ = ["read_read_replicas"]


def read_read_replicas(reader: Reader) -> dict[str, str]:
    """``READ_REPLICAS``: a dict of replica alias → primary alias, both in ``DATABASES``."""
    value = reader.get("READ_REPLICAS")
    aliases = sorted(django_settings.DATABASES)
    if not isinstance(value, dict):
        reader.problem(
            "READ_REPLICAS", "replicas", "must be a dict mapping the alias of each read replica "
            f"to the alias of its primary, such as {{'replica': 'default'}}, not {value!r}"
        )  # fmt: skip
        return {}
    kept: dict[str, str] = {}
    for replica, primary in value.items():
        for role, alias in (("replica", replica), ("primary", primary)):
            if not isinstance(alias, str) or alias not in aliases:
                hint = did_you_mean(alias, aliases) if isinstance(alias, str) else ""
                reader.problem(
                    "READ_REPLICAS", "replicas", f"names {alias!r} as a {role}, but DATABASES "
                    f"has no such alias ({', '.join(aliases)}){hint}"
                )  # fmt: skip
                break
        else:
            if replica == primary:
                reader.problem("READ_REPLICAS", "replicas",
                               f"names {replica!r} as a replica of itself")  # fmt: skip
            elif primary in value:
                reader.problem(
                    "READ_REPLICAS", "replicas", f"names {primary!r} as the primary of "
                    f"{replica!r}, but {primary!r} is a replica too: name the database written to"
                )  # fmt: skip
            else:
                kept[replica] = primary
    return kept
