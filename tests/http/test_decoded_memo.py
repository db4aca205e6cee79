"""The decoded-value memo of hits from a shared store without a near cache (``payload._Decoded``,
issue 11): a page hit whose payload is byte for byte the one decoded last time skips the MAC
and the decoding, while the store is still asked on every hit; anything else is verified again.

Against the real Redis and PostgreSQL stores.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from django.test import Client, override_settings

import freshcache
from freshcache import counters, payload
from freshcache.core import fetch, store_key
from freshcache.invalidation import invalidate_tags
from freshcache.scope import add_tags
from freshcache.stores import Store
from tests.conftest import store_url
from tests.http.conftest import count_calls, state


class Text:
    """A codec whose values are never mutated (``shareable``), counting its decodings."""

    shareable = True

    def __init__(self) -> None:
        self.decoded = 0

    def dumps(self, value: str) -> bytes:
        return value.encode()

    def loads(self, data: bytes) -> str:
        self.decoded += 1
        return data.decode()


@pytest.fixture(params=["redis", "database"])
def shared(
    request: pytest.FixtureRequest, transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Store]:
    # An empty memo: an earlier test's page (the same key and bytes) would be reused.
    monkeypatch.setattr(payload, "_decoded", payload._Decoded(payload.DECODED_BYTES))
    kind = request.param
    request.node.add_marker(getattr(pytest.mark, "postgres" if kind == "database" else "redis"))
    from tests.conftest import pytest_runtest_setup

    pytest_runtest_setup(request.node)
    with override_settings(FRESHCACHE={"STORE": store_url(kind), "HEADER": True}):
        store = freshcache.store()
        store.clear()
        counters.reset()
        yield store
        store.clear()


def compute(value: str) -> str:
    add_tags(["memo"])
    return value


def test_a_page_hit_is_decoded_once_while_the_store_answers_the_same_bytes(
    shared: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = Client()
    first = client.get("/t/plain/")
    assert state(first) == "miss"
    opened = count_calls(monkeypatch, payload, "_open")
    asked = count_calls(monkeypatch, shared, "lookup")
    for _ in range(3):
        again = client.get("/t/plain/")
        assert state(again) == "hit" and again.content == first.content
    assert len(asked) == 3  # the store decides every hit
    assert len(opened) == 1  # only the first hit verifies and decodes
    invalidate_tags(["http:plain"])
    changed = client.get("/t/plain/")
    assert state(changed) == "miss" and changed.content != first.content
    hit = client.get("/t/plain/")
    assert state(hit) == "hit" and hit.content == changed.content
    assert len(opened) == 2  # new bytes: verified and decoded again


def test_only_identical_bytes_reuse_a_value(shared: Store) -> None:
    codec = Text()
    assert fetch("k", lambda: compute("good"), codec=codec).stored
    for _ in range(3):
        assert fetch("k", lambda: compute("x"), codec=codec).value == "good"
    assert codec.decoded == 1
    stored = shared.lookup(store_key("k"))
    assert isinstance(stored, freshcache.stores.Hit)
    # The same length, one bit changed: verified again, and refused.
    forged = stored.payload[:-1] + bytes([stored.payload[-1] ^ 1])
    assert shared.set(store_key("k"), forged, ["memo"], shared.begin())
    out = fetch("k", lambda: compute("recomputed"), codec=codec)
    assert (out.hit, out.value) == (False, "recomputed")
    assert counters.snapshot()["corrupt_entries"] == 1


def test_another_secret_key_or_codec_never_reuses_a_value(shared: Store) -> None:
    codec = Text()
    fetch("k", lambda: compute("before"), codec=codec)
    assert fetch("k", lambda: compute("x"), codec=codec).hit
    with override_settings(SECRET_KEY="rotated"):  # the same bytes no longer verify
        out = fetch("k", lambda: compute("after"), codec=codec)
        assert (out.hit, out.value) == (False, "after")
    assert codec.decoded == 1
    fetch("k2", lambda: compute("mine"), codec=codec)
    assert fetch("k2", lambda: compute("x"), codec=codec).hit
    other = Text()
    out = fetch("k2", lambda: compute("y"), codec=other)
    assert out.hit and out.value == "mine" and other.decoded == 1


def test_a_payload_replayed_under_another_key_is_refused(shared: Store) -> None:
    codec = Text()
    fetch("admin", lambda: compute("secret"), codec=codec)
    assert fetch("admin", lambda: compute("x"), codec=codec).hit
    stored = shared.lookup(store_key("admin"))
    assert isinstance(stored, freshcache.stores.Hit)
    assert shared.set(store_key("public"), stored.payload, ["memo"], shared.begin())
    out = fetch("public", lambda: compute("public"), codec=codec)
    assert (out.hit, out.value) == (False, "public")


def test_values_that_callers_may_change_are_not_kept(shared: Store) -> None:
    fetch("list", lambda: [1, 2])
    got = fetch("list", lambda: [9])
    assert got.hit
    got.value.append(3)
    assert fetch("list", lambda: [9]).value == [1, 2]


def test_the_memo_stays_within_its_bound() -> None:
    memo = payload._Decoded(64 * 1024)
    codec = Text()
    for i in range(500):
        memo.put(f"k{i}", bytes(1000) + str(i).encode(), codec, None, str(i))
        assert memo.size <= memo.budget
    assert 0 < len(memo.entries) < 500
    assert memo.get("k499", bytes(1000) + b"499", codec, None) == (True, "499")
    assert memo.get("k0", bytes(1000) + b"0", codec, None) == (False, None)  # the oldest went
    memo.put("big", bytes(8 * 1024), codec, None, "big")  # over a sixteenth of the budget
    assert memo.get("big", bytes(8 * 1024), codec, None) == (False, None)
    kept = len(memo.entries)
    memo.put("k499", b"replaced", codec, None, "new")
    assert len(memo.entries) == kept and memo.size <= memo.budget
    assert memo.get("k499", bytes(1000) + b"499", codec, None) == (False, None)


def test_a_forked_child_starts_with_an_empty_memo() -> None:
    payload._decoded.put("k", b"bytes", Text(), None, "value")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os._exit(0 if not payload._decoded.entries else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert "k" in payload._decoded.entries


def test_a_page_is_counted_with_what_its_decoded_header_holds() -> None:
    """A page of many headers takes about 12x its JSON header once decoded: so counted, one
    that would overflow a sixteenth of the memo is not kept."""
    from freshcache.edge import publish
    from freshcache.http import page, serve, shadow

    assert serve.CODEC is page.PAGE_CODEC is shadow.CODEC  # one object: the memo compares it
    assert "PAGE_CODEC" in publish._still_current.__code__.co_names
    headers = [(f"x-h{i}", "v") for i in range(2000)]
    big = page.Page(status=200, headers=headers, body=b"b" * 100)
    data = page.PAGE_CODEC.dumps(big)
    decoded = page.PAGE_CODEC.loads(data)
    cost = page.PAGE_CODEC.memo_cost(decoded, data)
    assert cost > 10 * len(data)
    memo = payload._Decoded(16 * cost - 1)
    memo.put("k", data, page.PAGE_CODEC, None, decoded)
    assert not memo.entries and memo.size == 0
    memo = payload._Decoded(16 * (cost + 300))
    memo.put("k", data, page.PAGE_CODEC, None, decoded)
    assert memo.get("k", data, page.PAGE_CODEC, None) == (True, decoded)
