"""What a Redis store's user must be allowed to run, and what the server's ACL refuses it.

Redis checks a script's commands against the user's ACL only when the script calls them, so a
user without, say, ``cluster|nodes`` (the quorum guard of ``lua/_cluster.lua``) or without the
store's channel (Redis 7 gives a new user no channels: ``acl-pubsub-default resetchannels``)
connects fine and then fails every script or every bump, and the store computes uncached.
``manage.py check`` (freshcache.W011) asks the server beforehand, without changing anything:

* every command the store sends, and every command its scripts call, is queued inside
  ``MULTI`` with the store's own keys and channel, then the transaction is dropped (``DISCARD``):
  Redis checks the ACL (command, keys, channels) when it queues a command, and answers
  ``NOPERM`` there (https://redis.io/docs/latest/operate/oss_and_stack/management/security/acl/);
* nothing is run, so nothing is written and no subscriber hears anything.

When the user may not run ``MULTI`` itself, or the server cannot be reached, nothing can be
told: the check says nothing (freshcache.W002 covers an unreachable server).
"""

from __future__ import annotations

from typing import Any

__all__ = ["needed_commands", "refused"]


def needed_commands(store: Any) -> list[tuple[Any, ...]]:
    """The commands (with arguments: the store's own keys and channel) that ``store``, a
    ``RedisStore`` (one shard of a cluster store), sends or has its scripts call."""
    key = f"{store._base}:acl-check"  # never written: only queued, then discarded
    publish = "SPUBLISH" if store.cluster else "PUBLISH"
    found: list[tuple[Any, ...]] = [
        # Every new connection is fenced (``redis_lua.fence``), every operation is a script.
        ("INFO", "server"),
        ("EVAL", "return 1", 1, key),
        ("EVALSHA", "0" * 40, 1, key),
        # What the scripts call (``lua/*.lua``).
        ("GET", key),
        ("MGET", key, key),
        ("SET", key, "0"),
        ("DEL", key),
        ("INCR", key),
        ("PEXPIRE", key, 1),
        ("PERSIST", key),
        ("PTTL", key),
        ("TIME",),
        # Every bump publishes on the store's channel (from the scripts), for near caches.
        (publish, store._channel, ""),
        ("EXISTS", key) if store.cluster else ("PING",),  # ``probe``
        ("SCAN", 0, "MATCH", f"{store._base}:*", "COUNT", 1),  # ``clear``
        # The journal (``redis_journal.py``).
        ("LPUSH", key, ""),
        ("LTRIM", key, 0, 0),
        ("LRANGE", key, 0, 0),
        ("HINCRBYFLOAT", key, "n", 0),
        ("HGETALL", key),
    ]
    if store.near_cache:  # ``redis_channel.py``: a subscription, and heartbeats under it
        shard = "S" if store.cluster else ""
        found += [
            (f"{shard}SUBSCRIBE", store._channel),
            (f"{shard}UNSUBSCRIBE", store._channel),
            (publish, f"{store._channel}:hb:acl-check", ""),
        ]
    if store.cluster:
        found.append(("CLUSTER", "NODES"))  # the quorum guard (``lua/_cluster.lua``)
    else:
        found.append(("SCRIPT", "LOAD", "return 1"))  # redis-py loads a script it lacks
    return found


def refused(store: Any) -> list[str]:
    """What the server's ACL refuses ``store``'s user: one line per refused command, as
    ``"COMMAND: Redis's answer"``. Empty when everything is allowed, and when nothing can be
    told (the server unreachable, ``MULTI`` refused)."""
    from redis.exceptions import NoPermissionError, RedisError, ResponseError

    commands = needed_commands(store)
    try:
        pool = _pool(store, f"{store._base}:acl-check")
        connection = pool.get_connection()
    except NoPermissionError as exc:  # the fence of a new connection was refused
        return [f"INFO server, EVAL {store._base}:… (on every new connection): {str(exc).strip()}"]
    except (RedisError, OSError):
        return []
    clean = False
    found: list[str] = []
    try:
        connection.send_command("MULTI")
        try:
            connection.read_response()
        except ResponseError:
            clean = True
            return []
        for command in commands:
            connection.send_command(*command)
            try:
                connection.read_response()
            except NoPermissionError as exc:
                found.append(f"{_label(command)}: {str(exc).strip()}")
            except ResponseError:
                pass  # not about permissions (a command this server does not know)
        connection.send_command("DISCARD")
        connection.read_response()
        clean = True
        return found
    except (RedisError, OSError):
        return found
    finally:
        if not clean:
            connection.disconnect()  # in an unknown state: never back to the pool as it is
        pool.release(connection)


def _pool(store: Any, key: str) -> Any:
    """The connection pool of the server holding ``key``: the client's own, or on Redis
    Cluster the pool of the master serving the key's slot."""
    client = store._client
    if store.cluster:
        return client.get_node_from_key(key).redis_connection.connection_pool
    return client.connection_pool


def _label(command: tuple[Any, ...]) -> str:
    """``COMMAND first-argument`` (a key, channel or subcommand); a script's key, not its text."""
    if command[0] in ("EVAL", "EVALSHA"):
        return f"{command[0]} {command[3]}"
    return " ".join(str(part) for part in command[:2])
