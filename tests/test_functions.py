"""``@cached`` keys and ``depends_on`` forms, observed through what gets invalidated."""

from __future__ import annotations

import datetime
import decimal
import enum
import uuid

import pytest

from freshcache import cached, depends_on, invalidate
from freshcache.arguments import arguments_key
from freshcache.scope import open_scope
from tests.testapp.models import Item

pytestmark = pytest.mark.django_db(transaction=True)


class Color(enum.Enum):
    RED = 1


def key_of(*args: object, **kwargs: object) -> str:
    import inspect

    def f(*args: object, **kwargs: object) -> None: ...

    return arguments_key("f", inspect.signature(f), args, kwargs)[0]


def test_framing_cannot_collide() -> None:
    assert key_of("a", "bc") != key_of("ab", "c")
    assert key_of(1) != key_of("1") != key_of(1.0)
    assert key_of(True) != key_of(1)
    assert key_of(None) != key_of("None")
    assert key_of(("a", "b")) != key_of(["a", "b"])
    assert key_of({"a": 1, "b": 2}) == key_of({"b": 2, "a": 1})
    assert key_of({1, 2, 3}) == key_of({3, 2, 1})


def test_supported_argument_types_are_keyable() -> None:
    key_of(
        None,
        True,
        3,
        2.5,
        decimal.Decimal("1.10"),
        uuid.UUID(int=1),
        "s",
        b"b",
        datetime.date(2026, 1, 1),
        datetime.datetime(2026, 1, 1, 12),
        datetime.timedelta(1),
        Color.RED,
        Item,
        [1, (2, {3: frozenset({4})})],
    )


def test_unsaved_instance_is_rejected() -> None:
    with pytest.raises(TypeError, match=r"argument 'args' .* unsaved Item instance"):
        key_of(Item(name="x"))


def test_depends_on_as_call_decorator_and_context_manager() -> None:
    @depends_on("decorated")
    def helper() -> None: ...

    with open_scope() as scope:
        depends_on("called", Item)
        helper()
        with depends_on("managed"):
            pass
    assert {"called", "testapp.item", "decorated", "managed"} <= scope.tags


def test_depends_on_outside_a_scope_does_nothing() -> None:
    depends_on("nothing")  # no error, no effect


def test_depends_on_rejects_other_types() -> None:
    with pytest.raises(TypeError, match="a tag must be a str, a model instance or a model class"):
        depends_on(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty string"):
        depends_on("")


def test_instance_argument_adds_its_row_tag() -> None:
    # Loaded, as a request would: an instance this process just created is as old as its INSERT,
    # whose own bump then counts as a change (what is computed from it is served, not stored).
    item = Item.objects.get(pk=Item.objects.create(name="a").pk)

    @cached
    def upper(i: Item) -> str:
        return i.name.upper()  # no query: the dependency comes from the argument

    assert upper.outcome(item).tags == frozenset({f"testapp.item:{item.pk}"})
    assert upper.outcome(item).hit
    invalidate(item)
    assert not upper.outcome(item).hit


def test_method_with_unkeyable_self_names_self() -> None:
    class Box:
        @cached
        def value(self) -> int:
            return 1

    with pytest.raises(TypeError, match="argument 'self'"):
        Box().value()
