"""Roll-up: for any set of tags, the keys fit the edge and every tag's bump purges one of them;
or nothing fits and the response must be uncacheable for the edge."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from freshcache.edge import CATCH_ALL_KEY, EDGES, Budget, edge_key, label, purge_keys

TABLES = st.sampled_from(["blog.post", "blog.comment", "shop.item", "replica/blog.post"])
TAGS = st.one_of(
    TABLES,
    st.builds(lambda t, n: f"{t}:{n}", TABLES, st.integers(0, 10**6)),
    st.builds(lambda t, c, n: f"{t}?{c}={n}", TABLES, st.sampled_from(["post_id", "author_id"]),
              st.one_of(st.integers(0, 10**6), st.just("*"))),
    st.builds(lambda n: f"url:/p/{n}/", st.integers(0, 10**6)),
    st.text(min_size=1, max_size=200),  # free-form, any text
)  # fmt: skip
BUDGETS = st.one_of(
    st.sampled_from(
        [Budget(e.max_header_bytes, e.max_keys, len(e.separator)) for e in EDGES.values()]
    ),
    st.builds(
        Budget,
        max_bytes=st.integers(1, 3000),
        max_keys=st.one_of(st.none(), st.integers(1, 200)),
        separator_bytes=st.integers(1, 2),
        fixed_keys=st.integers(0, 3),
        fixed_bytes=st.integers(0, 60),
    ),
)


def header_size(keys: tuple[str, ...], budget: Budget) -> int:
    total = len(keys) + budget.fixed_keys
    return sum(map(len, keys)) + budget.fixed_bytes + budget.separator_bytes * max(total - 1, 0)


@settings(max_examples=300, deadline=None)
@given(st.sets(TAGS, max_size=400), BUDGETS)
def test_keys_fit_and_every_tags_bump_purges_one_or_the_page_is_uncacheable(
    tags: set[str], budget: Budget
) -> None:
    keys = label(tags, budget)
    if keys is None:
        # Only when not even the one catch-all key fits.
        assert not budget.fits(1, len(CATCH_ALL_KEY))
        return
    assert keys and list(keys) == sorted(set(keys))
    assert header_size(keys, budget) <= budget.max_bytes
    if budget.max_keys is not None:
        assert len(keys) + budget.fixed_keys <= budget.max_keys
    for tag in tags:
        assert purge_keys(tag) & set(keys), tag


def test_keys_that_fit_are_sent_as_they_are() -> None:
    tags = {"blog.post:1", "blog.comment?post_id=1", "weather"}
    assert label(tags, Budget(1000)) == tuple(sorted(edge_key(t) for t in tags))


def test_predicate_values_roll_up_to_their_column_first() -> None:
    tags = {f"blog.comment?post_id={i}" for i in range(20)} | {"blog.post:1"}
    keys = label(tags, Budget(10_000, max_keys=5))
    assert keys == tuple(sorted([edge_key("blog.comment?post_id=*"), edge_key("blog.post:1")]))


def test_rows_roll_up_to_their_table_the_biggest_group_first() -> None:
    tags = {f"blog.post:{i}" for i in range(10)} | {f"shop.item:{i}" for i in range(3)}
    keys = label(tags, Budget(10_000, max_keys=8))
    assert keys == tuple(sorted(["blog.post", *(edge_key(f"shop.item:{i}") for i in range(3))]))


def test_a_table_already_depended_on_absorbs_its_rows_first() -> None:
    tags = {f"blog.post:{i}" for i in range(3)} | {"blog.post"}
    tags |= {f"shop.item:{i}" for i in range(3)}
    keys = label(tags, Budget(10_000, max_keys=5))
    assert keys == tuple(sorted(["blog.post", *(edge_key(f"shop.item:{i}") for i in range(3))]))


def test_free_form_tags_that_do_not_fit_become_the_catch_all_key() -> None:
    assert label({f"topic-{i}" for i in range(200)}, Budget(4096, max_keys=128)) == (CATCH_ALL_KEY,)
    assert label(set(), Budget(100)) == (CATCH_ALL_KEY,)  # an edge can always purge it


def test_nothing_fits_a_tiny_header() -> None:
    assert label({"blog.post:1"}, Budget(3)) is None
    assert label({"a"}, Budget(100, fixed_keys=1, max_keys=1)) is None
