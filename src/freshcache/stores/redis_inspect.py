"""``RedisStore.inspect``: an entry as stored, with its tags' current versions (diagnostics).

Plain reads, no script: ``GET`` and ``PTTL`` of the entry and ``GET`` of the epoch in one
pipeline, then one ``MGET`` of its tags' versions (every key is under the store's braces, so
one Redis Cluster slot). Not atomic, and need not be: nothing is decided from it. The layout is
the one ``redis.py`` documents; an entry that does not parse is shown as not stored (a lookup
would delete it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Stored

if TYPE_CHECKING:
    from .redis import RedisStore

__all__ = ["inspect"]


def _text(raw: Any) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode() if isinstance(raw, bytes) else str(raw)
    except UnicodeDecodeError:
        return None


def _version(text: str | None, epoch: str) -> str | None:
    """``"<epoch>:<seq>."`` -> ``"12"``, ``"<epoch>:<seq>:<nonce>."`` -> ``"12.<nonce>"``; a
    version of another epoch, or garbage, as it is (it matches nothing)."""
    if text is None:
        return None
    body = text.removeprefix(epoch + ":")
    if body == text or not body.endswith("."):
        return text
    seq, _, nonce = body[:-1].partition(":")
    return f"{seq}.{nonce}" if nonce else seq


def _parse(raw: bytes) -> tuple[str, dict[str, str], bytes] | None:
    """``"<epoch>\\n<n>\\n"`` + n bytes of ``"tag\\tversion\\n"`` + payload."""
    head, _, rest = raw.partition(b"\n")
    count, _, rest = rest.partition(b"\n")
    if not count.isdigit() or int(count) > len(rest):
        return None
    packed, payload = rest[: int(count)], rest[int(count) :]
    versions: dict[str, str] = {}
    for line in packed.decode(errors="replace").split("\n")[:-1]:
        tag, tab, version = line.partition("\t")
        if not tab:
            return None
        versions[tag] = version
    return head.decode(errors="replace"), versions, payload


def inspect(store: RedisStore, key: str) -> Stored | None:
    def read() -> tuple[Any, Any, Any]:
        pipe = store._client.pipeline(transaction=False)
        pipe.get(store._entry_prefix + key)
        pipe.pttl(store._entry_prefix + key)
        pipe.get(store._epoch_key)
        raw, ttl, epoch = pipe.execute()
        return raw, ttl, epoch

    raw, ttl, epoch_raw = store._call(read, breaker=False)
    parsed = _parse(raw) if isinstance(raw, bytes) else None
    if parsed is None:
        return None
    entry_epoch, recorded, payload = parsed
    epoch = _text(epoch_raw) or ""
    tags = sorted(recorded)
    found = store._call(
        lambda: store._client.mget([store._tag_prefix + t for t in tags]), breaker=False
    ) if tags else []  # fmt: skip
    current = {tag: _version(_text(v), epoch) for tag, v in zip(tags, found, strict=True)}
    return Stored(
        payload,
        {tag: _version(v, entry_epoch) or v for tag, v in recorded.items()},
        current,
        None if not isinstance(ttl, int) or ttl < 0 else ttl / 1000,
        same_epoch=entry_epoch == epoch,
    )
