"""Smoke test with a real varnishd and the xkey vmod (Debian's varnish and varnish-modules):
Varnish accepts freshcache's ``xkey`` header, indexes the page under each key, purges it by any
key of ``purge_keys(tag)``, and never shows the keys to clients. The VCL is docs/edge.md's
(tests/edge/varnish.vcl, checked by test_docs.py); ``varnish`` is in conftest.py. Purging on
writes: test_purge_varnish.py.
"""

from __future__ import annotations

import pytest
import requests
from django.test import override_settings

import freshcache
from freshcache.edge import edge_key, purge_keys
from freshcache.http import url_tag
from tests.edge import examples


def _from_cache(response: requests.Response) -> bool:
    # X-Varnish holds this request's id, and the stored object's too on a hit.
    return len(response.headers["X-Varnish"].split()) == 2


@pytest.mark.django_db(transaction=True)
def test_varnish_indexes_the_page_under_its_keys_and_purges_it_by_any_of_them(
    varnish: str,
) -> None:
    # The guide's Varnish settings, and a max-age only so that Varnish keeps the page here: with
    # the default no-cache it revalidates every time (nothing to purge until item 2's purgers).
    raw = {"STORE": "memory://", "HEADER": True, "BROWSER_CACHE_CONTROL": "max-age=60"}
    with override_settings(FRESHCACHE={**raw, **examples.VARNISH}, ROOT_URLCONF="tests.edge.views"):
        freshcache.store().clear()
        first = requests.get(varnish + "/e/rows/3/", timeout=5)
        assert first.status_code == 200 and first.text == "3 rows"
        assert first.headers["X-Freshcache"] == "miss"
        assert "xkey" not in first.headers  # the VCL unsets it for clients
        assert not _from_cache(first)
        assert _from_cache(requests.get(varnish + "/e/rows/3/", timeout=5))

        # The page's tags are its rows and its URL: a bump of the table alone does not touch it,
        # in freshcache or at the edge (writes to a row bump the row's tag too).
        for tag, purged in [("blog.post:1", 1), ("blog.post:99", 0), ("blog.post", 0),
                            (url_tag("/e/rows/3/"), 1)]:  # fmt: skip
            requests.get(varnish + "/e/rows/3/", timeout=5)  # back in the cache
            keys = " ".join(sorted(purge_keys(tag) - {"~all"}))
            answer = requests.request(
                "PURGE", varnish + "/", headers={"xkey-purge": keys}, timeout=5
            )
            assert answer.reason == f"Purged {purged}", tag
            after = requests.get(varnish + "/e/rows/3/", timeout=5)
            assert _from_cache(after) is (purged == 0), tag

        # 2,000 rows do not fit varnishd's 8k header limit (a 503 if sent): rolled up to the
        # table, and a bump of any row purges the page.
        big = requests.get(varnish + "/e/rows/2000/", timeout=5)
        assert big.status_code == 200 and big.headers["X-Freshcache-Edge"] == "keys"
        assert _from_cache(requests.get(varnish + "/e/rows/2000/", timeout=5))
        keys = " ".join(sorted(purge_keys("blog.post:1500")))
        answer = requests.request("PURGE", varnish + "/", headers={"xkey-purge": keys}, timeout=5)
        assert answer.reason == "Purged 1"

        # The catch-all key is indexed only on pages that carry it.
        assert edge_key("blog.post:1") == "blog.post~3A1"
        answer = requests.request("PURGE", varnish + "/", headers={"xkey-purge": "~all"}, timeout=5)
        assert answer.reason == "Purged 0"
