"""Which copies of a CSP nonce count as transformed (the page keeps them, so it is not stored)."""

from __future__ import annotations

import base64
import json
import urllib.parse

from django.utils.html import escape, escapejs
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from freshcache.http.carry import nonce_transformed

TRANSFORMS = {
    "escapejs": lambda n: str(escapejs(n)),
    "quote": lambda n: urllib.parse.quote(n, safe=""),
    "quote_plus": urllib.parse.quote_plus,
    "json_ascii": lambda n: json.dumps(n).replace("+", "\\u002b").replace("/", "\\/")[1:-1],
    "html_hex": lambda n: "".join(f"&#x{ord(c):x};" if not c.isalnum() else c for c in n),
    "unpadded": lambda n: n.rstrip("="),
}

nonces = st.binary(min_size=16, max_size=16).map(lambda raw: base64.b64encode(raw).decode())


def test_the_nonce_that_escaped_the_old_rule() -> None:
    # Its longest alphanumeric run has 6 characters: the rule that looked at that run alone
    # let its |escapejs copy through (seen in CI, Django 6.0).
    nonce = "XMh+6+AIF/9vn51/lrAmDA=="
    page = f"<script nonce=\"{nonce}\">s.nonce = '{escapejs(nonce)}';</script>".encode()
    assert nonce_transformed(page, nonce)


@settings(max_examples=300, deadline=None)
@given(nonce=nonces, form=st.sampled_from(sorted(TRANSFORMS)), other=nonces)
def test_any_transformed_copy_is_seen(nonce: str, form: str, other: str) -> None:
    copy = TRANSFORMS[form](nonce)
    if nonce in copy:  # the copy holds the nonce as is: cut into a slot like any other
        return
    page = f'<p nonce="{nonce}">{other}</p><script>x = "{copy}";</script>'.encode()
    assert nonce_transformed(page, nonce), (nonce, form, copy)


@settings(max_examples=300, deadline=None)
@given(nonce=nonces, other=nonces, copies=st.integers(0, 3))
def test_copies_as_is_and_other_nonces_are_not(nonce: str, other: str, copies: int) -> None:
    assume(other != nonce)
    printed = f'<script nonce="{nonce}"></script>' * copies
    page = (printed + escape(f"{other} {escapejs(other)}")).encode()
    assert not nonce_transformed(page, nonce), (nonce, other)
