"""A Redis user of its own for freshcache: the ACL that docs/scaling.md ("Redis users (ACL)")
gives is enough for everything a store does, and ``manage.py check`` finds it clean."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from django.test import override_settings

from freshcache.checks import check_settings
from freshcache.stores import Hit
from freshcache.stores.redis import RedisStore
from tests.helpers import RedisServer
from tests.helpers.near_trials import wait_ready

pytestmark = pytest.mark.redis

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "scaling.md"


def _documented_rules() -> list[str]:
    """The ``ACL SETUSER`` line of the guide, as arguments (the password filled in)."""
    section = GUIDE.read_text().split("## Redis users (ACL)", 1)[1]
    (line,) = re.findall(r"^ACL SETUSER .*$", section, flags=re.MULTILINE)
    words = line.split()[2:]
    assert words[0] == "freshcache", line
    return [">pw" if word == ">PASSWORD" else word for word in words[1:]]


def test_the_documented_user_can_do_everything_a_store_does() -> None:
    with RedisServer() as server:
        admin = server.client()
        admin.execute_command("ACL", "SETUSER", "freshcache", *_documented_rules())
        url = server.url.replace("redis://", "redis://freshcache:pw@")
        # DJANGO_CACHES: the test settings' LocMemCache would add W005, which is not the subject.
        near = f"{url}?near_cache=1mb"
        with override_settings(FRESHCACHE={"STORE": near, "DJANGO_CACHES": {"default": "shared"}}):
            assert check_settings() == []
        store = RedisStore("default", near, socket_timeout=1).near()
        try:
            wait_ready(store)  # subscribed, and its heartbeat heard
            snapshot = store.begin()
            assert store.set("k", b"v", ["t"], snapshot)
            assert isinstance(store.lookup("k"), Hit)
            assert store.inspect("k") is not None
            store.near.flush()  # from Redis, not from the near cache
            assert isinstance(store.lookup("k"), Hit)
            store.bump(["t"])
            assert not isinstance(store.lookup("k"), Hit)
            token = store.acquire("lease", 5)
            assert token is not None
            store.release("lease", token)
            journal = store.journal()
            journal.push("writes", ["one"], 10)
            assert journal.read("writes", 10) == ["one"]
            journal.add({"hits": 1})
            assert journal.counts()["hits"] == 1
            store.clear()
            deadline = time.monotonic() + 5
            while not store.channel.ready():  # a clear flushes every near cache, then resumes
                assert time.monotonic() < deadline
                time.sleep(0.01)
        finally:
            store.close()
        admin.close()
