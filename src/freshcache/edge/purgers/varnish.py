"""Varnish with the xkey vmod (Debian's ``varnish-modules``): an HTTP ``PURGE`` request per batch.

The request carries the keys, space-separated, in the header the VCL hands to ``xkey.purge()``
(``xkey-purge`` in the VCL of docs/edge.md, which ``tests/edge/test_purge_varnish.py`` runs).
xkey: "Multiple keys can be specified per header line with spaces and/or commas as separators"
(vmod_xkey(3)). The only limit is varnishd's ``http_req_hdr_len`` ("Maximum length of any HTTP
client request header we will allow", default 8k; ``varnishd -x parameter``): batches stay under
7,900 bytes. Plain HTTP through the standard library: there is no SDK.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any, ClassVar

from .base import REQUIRED, PurgeFailed, Purger, is_http_url, retry_after

__all__ = ["Varnish"]


class Varnish(Purger):
    """Options: ``URLS`` (every Varnish to purge, e.g. ``["http://127.0.0.1:6081/"]``; a batch is
    done once each of them answered 2xx) and ``HEADER`` (``"xkey-purge"``)."""

    OPTIONS: ClassVar[dict[str, Any]] = {"URLS": REQUIRED, "HEADER": "xkey-purge"}
    MAX_KEYS: ClassVar[int] = 1000
    MAX_BYTES: ClassVar[int | None] = 7900

    @classmethod
    def check(cls, options: Mapping[str, Any]) -> list[str]:
        wrong = super().check(options)
        urls = options.get("URLS", [])
        if (not isinstance(urls, list | tuple) or not urls
                or not all(is_http_url(u) for u in urls)):  # fmt: skip
            wrong.append(f"['URLS'] must be a non-empty list of http:// or https:// URLs, "
                         f"not {urls!r}")  # fmt: skip
        header = options.get("HEADER", "xkey-purge")
        if not isinstance(header, str) or not header or not header.replace("-", "").isalnum():
            wrong.append(f"['HEADER'] must be a header name such as 'xkey-purge', not {header!r}")
        return wrong

    def purge(self, keys: list[str]) -> None:
        for url in self.options["URLS"]:
            request = urllib.request.Request(
                url, method="PURGE", headers={self.options["HEADER"]: " ".join(keys)}
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                    answer.read()
            except urllib.error.HTTPError as exc:
                raise PurgeFailed(
                    f"{url} answered {exc.code} {exc.reason}",
                    status=exc.code,
                    retry_after=retry_after(exc.headers.get("Retry-After")),
                ) from None
            except (OSError, ValueError) as exc:  # refused, reset, timed out, a bad URL
                raise PurgeFailed(f"{url}: {exc}") from None
