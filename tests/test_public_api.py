"""Pin the public surface: adding or removing a public name is a deliberate change."""

from __future__ import annotations

import freshcache


def test_exported_names() -> None:
    assert freshcache.__all__ == sorted(freshcache.__all__)
    for name in freshcache.__all__:
        assert getattr(freshcache, name) is not None, name


def test_unknown_attribute_is_an_attribute_error() -> None:
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        freshcache.nope  # noqa: B018
