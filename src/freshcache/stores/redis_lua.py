"""The Lua scripts of the Redis store (``lua/``, one per atomic operation), and the fence.

Every script is loaded after ``lua/_position.lua``, the helpers they share (reading keys that
may hold garbage, the sequence position and its epoch, expiring tag versions and entries).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from importlib import resources
from typing import Any

__all__ = ["CORRUPT", "fence", "script"]

#: The status a script returns when it started a new epoch because the position held garbage.
CORRUPT = 2


def script(name: str) -> str:
    """The script ``lua/NAME.lua``, after the helpers every script shares (``_position.lua``)."""
    lua = resources.files("freshcache.stores").joinpath("lua")
    return lua.joinpath("_position.lua").read_text() + lua.joinpath(f"{name}.lua").read_text()


def fence(connection: Any, fence_script: str, keys: Sequence[str], hold_ms: int = 0) -> Any:
    """Run ``lua/fence.lua`` on a new ``connection`` with the server's run id, before anything
    else: a server that is not the one the epoch was started on starts a new epoch.

    ``keys``: the epoch, server, sequence, sequence-copy and hold keys; ``hold_ms``: how long
    bumps wait after a new server's epoch started (Sentinel). Returns the script's status
    (0, 1, or :data:`CORRUPT`), or None when the server does not tell its run id.
    """
    connection.on_connect()
    connection.send_command("INFO", "server")
    info = connection.read_response()
    text = info.decode() if isinstance(info, bytes) else str(info)
    run_ids = [ln[7:].strip() for ln in text.splitlines() if ln.startswith("run_id:")]
    run_id = run_ids[0] if run_ids else None
    if run_id is None:  # pragma: no cover - INFO renamed or filtered by a proxy
        return None
    connection.send_command(
        "EVAL", fence_script, len(keys), *keys, run_id, secrets.token_hex(8), hold_ms
    )
    return connection.read_response()
