"""The edge key of a tag: safe in every edge's header, deterministic, injective, and purged by
every bump that should reach it."""

from __future__ import annotations

import re
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from freshcache.edge import (
    CATCH_ALL_KEY,
    KEY_MAX_LENGTH,
    ancestors,
    edge_key,
    parent,
    purge_keys,
)

#: Akamai's allowed tag characters (the strictest of the four edges), minus what we never use.
SAFE_KEY = re.compile(r"[A-Za-z0-9._~-]+")

# Tags as freshcache names them, and anything else a user may pass by hand (any text at all).
TABLE = st.from_regex(r"(replica/)?[a-z_][a-z0-9_]{0,12}\.[a-z_][a-z0-9_]{0,12}", fullmatch=True)
VALUE = st.text(min_size=1, max_size=80)
TAGS = st.one_of(
    TABLE,
    st.builds(lambda t, v: f"{t}:{v}", TABLE, VALUE),
    st.builds(lambda t, c, v: f"{t}?{c}={v}", TABLE, st.from_regex(r"[a-z_]{1,10}", fullmatch=True),
              st.one_of(VALUE, st.just("*"))),
    st.text(min_size=1, max_size=300),
)  # fmt: skip


@given(TAGS)
def test_a_key_is_safe_for_every_edge_header_and_within_akamais_length(tag: str) -> None:
    key = edge_key(tag)
    assert SAFE_KEY.fullmatch(key), key
    assert len(key) <= KEY_MAX_LENGTH
    assert key.isascii() and " " not in key and "," not in key


@given(TAGS, TAGS)
def test_two_tags_never_share_a_key(a: str, b: str) -> None:
    if a != b:
        assert edge_key(a) != edge_key(b)


def test_keys_that_differ_only_in_escapes_stay_apart() -> None:
    # The characters the escape form itself uses, and tags that spell an escape.
    tags = ["a:b", "a~3Ab", "a~b", "~all", "a~h" + "0" * 32, "ä", "~C3~A4", "#0123", "a b"]
    keys = [edge_key(t) for t in tags]
    assert len(set(keys)) == len(tags)
    assert CATCH_ALL_KEY not in keys


def test_long_tags_keep_a_readable_head_and_end_in_a_digest() -> None:
    tag = "blog.post?slug=" + "x" * 300
    key = edge_key(tag)
    assert key.startswith("blog.post~3Fslug~3Dxxx")
    assert re.fullmatch(r"[^~]*(~[0-9A-F]{2}[^~]*)*~h[0-9a-f]{32}", key)
    assert len(key) == KEY_MAX_LENGTH
    # Only two long tags with the same head *and* digest share a key: a 128-bit collision.
    assert edge_key(tag + "y") != key


def test_keys_are_the_same_in_another_process() -> None:
    tags = ["blog.post:7", "weather:london", "ü" * 90, "replica/blog.comment?post_id=7"]
    code = (
        "import sys; from freshcache.edge import edge_key; "
        "print('\\n'.join(edge_key(t) for t in sys.argv[1:]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *tags], capture_output=True, text=True, check=True
    ).stdout.split("\n")[: len(tags)]
    assert out == [edge_key(t) for t in tags]


def test_roll_ups_of_each_kind_of_tag() -> None:
    assert ancestors("blog.comment?post_id=7") == ("blog.comment?post_id=*", "blog.comment")
    assert ancestors("blog.comment?post_id=*") == ("blog.comment",)
    assert ancestors("blog.post:7") == ("blog.post",)
    assert ancestors("replica/blog.post:7") == ("replica/blog.post",)
    assert ancestors("blog.post") == ()
    assert ancestors("url:/post/7/") == ("url",)  # every page's URL tag
    assert ancestors("#0af3") == () and parent(":x") is None and parent("?x") is None


@given(TAGS)
def test_a_bump_purges_the_tags_key_its_roll_ups_and_the_catch_all(tag: str) -> None:
    keys = purge_keys(tag)
    assert edge_key(tag) in keys and CATCH_ALL_KEY in keys
    assert {edge_key(a) for a in ancestors(tag)} <= keys
    assert len(ancestors(tag)) <= 2


def test_the_edge_surface_is_pinned() -> None:
    """What the purgers (issue 12 item 2) and users build on; changing it is deliberate."""
    import freshcache.edge

    assert freshcache.edge.__all__ == [
        "CATCH_ALL_KEY",
        "EDGES",
        "KEY_MAX_LENGTH",
        "Budget",
        "Edge",
        "ancestors",
        "edge_key",
        "label",
        "parent",
        "purge_keys",
    ]
