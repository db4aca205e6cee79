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
        found += [
            ("CLUSTER", "NODES"),  # the quorum guard (``lua/_cluster.lua``)
            ("CLUSTER", "SLOTS"),  # redis-py's cluster client reads the slot map with it,
            ("COMMAND",),  # and each command's key positions with this
        ]
    else:
        found.append(("SCRIPT", "LOAD", "return 1"))  # redis-py loads a script it lacks
    return found


def refused(store: Any) -> list[str]:
    """What the server's ACL refuses ``store``'s user: one line per refused command, as
    ``"COMMAND: Redis's answer"``. Empty when everything is allowed, and when nothing can be
    told (the server unreachable, ``MULTI`` refused). Never raises."""
    try:
        return _refused(store)
    except Exception:  # a check must never fail: what cannot be asked is not reported
        return []


def _refused(store: Any) -> list[str]:
    from redis.exceptions import NoPermissionError, RedisError, ResponseError

    commands = needed_commands(store)
    try:
        pool = _pool(store, f"{store._base}:acl-check")
        connection = pool.get_connection()
    except NoPermissionError as exc:
        return [f"a new connection (AUTH, SELECT, CLIENT SETNAME, the fence): {_said(exc)}"]
    except Exception:
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
                found.append(f"{_label(command)}: {_said(exc)}")
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
    Cluster the pool of the master serving the key's slot, or, when the cluster client cannot
    be made (a user refused ``CLUSTER SLOTS`` or ``COMMAND`` looks like a node outside cluster
    mode to redis-py), a client of the first node the URL names."""
    client = store._client
    if not store.cluster:
        return client.connection_pool
    # Never made here: making it tries every node the URL names with redis-py's retries, for
    # each shard, which took 22 s for a cluster that does not answer.
    made = client.made() if hasattr(client, "made") else client
    if made is not None:
        try:
            return made.get_node_from_key(key).redis_connection.connection_pool
        except Exception:
            pass
    startup = getattr(client, "startup", None)
    if startup is None:
        raise LookupError("no node of the cluster to ask")
    return startup().connection_pool


def _label(command: tuple[Any, ...]) -> str:
    """The command, with its subcommand: never its keys, channel or script (they are the
    store's own, and the same line then stands for every shard)."""
    if command[0] in ("INFO", "CLUSTER", "SCRIPT", "CLIENT"):
        return f"{command[0]} {command[1]}"
    return str(command[0])


def _said(exc: BaseException) -> str:
    return str(exc).strip()
