"""What an attacker with write access to the shared store can and cannot do.

Payloads in shared stores (Redis, the database) carry an HMAC keyed from ``SECRET_KEY`` and
bound to the entry's key; it is verified before anything is unpickled. A forged, truncated,
replayed or older-format payload is a miss (the value is recomputed), never an exception and
never code execution (reliability notes, S8 and A12).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings

import freshcache
from freshcache import counters, depends_on
from freshcache.core import fetch, store_key
from freshcache.stores import Store
from tests.conftest import store_url


class Canary:
    """Unpickling this creates a file: proof that untrusted bytes were unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.path), "w"))


class Removed:
    """A class whose module is renamed in the pickle, as if a deploy had removed it."""


def compute(value: str = "honest") -> str:
    depends_on("sec")
    return value


def plant(store: Store, key: str, payload: bytes) -> None:
    """Write ``payload`` straight into the store, as anyone who can reach the store could."""
    assert store.set(store_key(key), payload, ["sec"], store.begin()) is True


def stored_payload(store: Store, key: str) -> bytes:
    hit = store.lookup(store_key(key))
    assert isinstance(hit, freshcache.stores.Hit)
    return hit.payload


@pytest.fixture(params=["database", "redis"])
def shared_store(request: pytest.FixtureRequest, transactional_db: None) -> Iterator[Store]:
    kind = request.param
    request.node.add_marker(getattr(pytest.mark, "postgres" if kind == "database" else "redis"))
    from tests.conftest import pytest_runtest_setup

    pytest_runtest_setup(request.node)
    with override_settings(FRESHCACHE={"STORE": store_url(kind)}):
        store = freshcache.store()
        store.clear()
        counters.reset()
        yield store
        store.clear()


@pytest.fixture
def any_store(store_kind: str, transactional_db: None) -> Iterator[Store]:
    with override_settings(FRESHCACHE={"STORE": store_url(store_kind)}):
        store = freshcache.store()
        store.clear()
        counters.reset()
        yield store
        store.clear()


def assert_recomputed(key: str, value: str = "honest") -> None:
    out = fetch(key, lambda: compute(value))
    assert (out.value, out.hit, out.stored) == (value, False, True)
    assert freshcache.stats()["corrupt_entries"] == 1
    assert fetch(key, lambda: compute("other")).value == value  # the fresh entry is served


@pytest.mark.parametrize("with_format_prefix", [True, False])
def test_malicious_pickle_is_never_unpickled(
    shared_store: Store, tmp_path: Path, with_format_prefix: bool
) -> None:
    canary = tmp_path / "pwned"
    evil = pickle.dumps(Canary(canary))
    # With the current format prefix and a MAC-sized run of bytes, or bare.
    plant(shared_store, "k", (b"fc1" + b"\0" * 32 + evil) if with_format_prefix else evil)
    assert_recomputed("k")
    assert not canary.exists()


def test_payload_signed_for_another_key_is_rejected(shared_store: Store) -> None:
    fetch("admin-only", lambda: compute("secret"))
    plant(shared_store, "public", stored_payload(shared_store, "admin-only"))
    assert_recomputed("public", "public value")


def test_payload_signed_with_another_secret_key_is_rejected(shared_store: Store) -> None:
    with override_settings(SECRET_KEY="another deployment's secret"):
        fetch("k", lambda: compute("theirs"))
        forged = stored_payload(shared_store, "k")
    plant(shared_store, "k", forged)
    assert_recomputed("k")


def test_changing_secret_key_makes_old_entries_miss(shared_store: Store) -> None:
    assert fetch("k", lambda: compute("before")).stored is True
    with override_settings(SECRET_KEY="rotated"):
        out = fetch("k", lambda: compute("after"))
        assert (out.value, out.hit) == ("after", False)
        assert fetch("k", lambda: compute("x")).hit is True


def test_truncated_payload_is_a_miss(any_store: Store) -> None:
    fetch("k", lambda: compute("a value long enough to cut"))
    payload = stored_payload(any_store, "k")
    plant(any_store, "k", payload[: len(payload) - 7])
    assert_recomputed("k")


@pytest.mark.parametrize("payload", [b"", b"fc", b"fc1", b"fc1short"])
def test_empty_and_short_payloads_are_misses(any_store: Store, payload: bytes) -> None:
    plant(any_store, "k", payload)
    assert_recomputed("k")


def test_older_format_payload_is_a_miss(any_store: Store) -> None:
    fetch("k", lambda: compute())
    payload = stored_payload(any_store, "k")
    assert payload.startswith(b"fc1")
    plant(any_store, "k", b"fc0" + payload[3:])
    assert_recomputed("k")


def test_verified_payload_that_no_longer_unpickles_is_a_miss(shared_store: Store) -> None:
    """Signed by us, but for a class that was since removed (a deploy): a miss."""
    from freshcache.core import _seal

    data = pickle.dumps(Removed())
    assert b"tests.test_security" in data
    data = data.replace(b"tests.test_security", b"tests.no_such_modul")
    plant(shared_store, "k", _seal(data, "k"))
    assert_recomputed("k")
