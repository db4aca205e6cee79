"""Pin the public surface: adding or removing a public name is a deliberate change."""

from __future__ import annotations

import freshcache

EXPECTED = [
    "Outcome",
    "cache_page",
    "cached",
    "depends_on",
    "invalidate",
    "page_outcome",
    "register",
    "register_placeholder",
    "request_outcomes",
    "stats",
    "store",
]


def test_exported_names() -> None:
    assert freshcache.__all__ == EXPECTED
    for name in EXPECTED:
        assert callable(getattr(freshcache, name)), name


def test_unknown_attribute_is_an_attribute_error() -> None:
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        freshcache.nope  # noqa: B018
