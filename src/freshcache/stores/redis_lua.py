"""The Lua scripts of the Redis store (``lua/``, one per atomic operation), and the fence.

Every script is loaded after ``lua/_position.lua``, the helpers they share (reading keys that
may hold garbage, the sequence position and its epoch, expiring tag versions and entries).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from importlib import resources
from typing import Any

__all__ = ["CORRUPT", "NODE_TIMEOUT_MS", "fence", "script"]

#: The status a script returns when it started a new epoch because the position held garbage.
CORRUPT = 2


#: Redis's default ``cluster-node-timeout`` (milliseconds).
NODE_TIMEOUT_MS = 15_000


def script(name: str, *, cluster: bool = False, node_timeout_ms: int = NODE_TIMEOUT_MS) -> str:
    """The script ``lua/NAME.lua``, after the helpers every script shares (``_position.lua``),
    and on Redis Cluster the fence and quorum guard every script runs there (``_cluster.lua``),
    which needs the cluster's ``cluster-node-timeout``: ``node_timeout_ms`` (scripts cannot
    read it: ``CONFIG`` is refused inside a script)."""
    lua = resources.files("freshcache.stores").joinpath("lua")
    fenced = ""
    if cluster:
        fenced = f"local fc_node_timeout_ms = {int(node_timeout_ms)}\n" + (
            lua.joinpath("_cluster.lua").read_text()
        )
    return (
        lua.joinpath("_position.lua").read_text() + fenced + lua.joinpath(f"{name}.lua").read_text()
    )


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
