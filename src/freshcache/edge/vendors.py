"""The edges freshcache labels pages for, and the limits each documents for its key header.

Each limit below is the vendor's own number, with the page it is read from; where the header
budget freshcache uses is lower than the vendor's limit, the reason is given. Going past a limit
is never an error at the edge: the keys past it are silently dropped (Fastly, Cloudflare, Akamai)
or the fetch fails (Varnish answers 503). Dropped keys are purges that never reach the page, so
freshcache never sends a header that does not fit: it rolls the tags up (``rollup.py``) or marks
the response uncacheable for the edge.

Fastly, ``Surrogate-Key`` (space-separated)
    "Individual keys are limited to 1024 bytes in length, and the total length of the
    Surrogate-Key header may not exceed 16,384 bytes. If either of these limits are reached
    while parsing a Surrogate-Key header, the key currently being parsed and all keys following
    it within the same header will be ignored."
    https://www.fastly.com/documentation/reference/http/http-headers/Surrogate-Key/ (also
    "Surrogate key size 1KB", "Surrogate key header size 16KB" in
    https://www.fastly.com/documentation/reference/vcl/constraints-and-limitations). No limit on
    the number of keys is documented. Fastly strips the header from what clients receive
    "unless the header Fastly-Debug is present in the request" (same page).

Cloudflare, ``Cache-Tag`` (comma-separated)
    "Individual tags do not have a maximum length, but the aggregate Cache-Tag HTTP header cannot
    exceed 16 KB after the header field name, which is approximately 1,000 unique tags";
    Cloudflare "removes the Cache-Tag HTTP header before sending the response to your website
    visitor". https://developers.cloudflare.com/cache/how-to/purge-cache/purge-by-tags/ .
    freshcache budgets 16,000 bytes (16 KB read as the smaller, decimal, unit) and 1,000 keys
    (an older version of that page, support article 206596608, said "or 1000 unique tags").
    Cloudflare compares tags case-insensitively (same article). A per-tag limit of 1,024
    characters is sometimes quoted for purge requests; it could not be confirmed on the current
    page, and freshcache's keys are at most 128 characters anyway.

Varnish with the xkey vmod, ``xkey`` (space-separated)
    "Multiple keys can be specified per header line with spaces and/or commas as separators"
    (vmod_xkey(3), varnish-modules). xkey itself sets no limit; varnishd's parameter
    ``http_resp_hdr_len`` ("Maximum length of any HTTP backend response header we will allow",
    default 8k) does, and ``http_resp_size`` (default 32k) bounds all the response's headers
    together; past either the fetch fails (varnishd -x parameter, Varnish 7.1). freshcache
    budgets 8,000 bytes for the value (8k minus the name and some slack); lower it with
    ``EDGE["MAX_HEADER_BYTES"]`` when other headers are large. Varnish passes the header to
    clients unless the VCL unsets it (``unset resp.http.xkey`` in ``vcl_deliver``).

Akamai, ``Edge-Cache-Tag`` (comma-separated)
    "A single tag can't exceed 128 characters", "The maximum number of tags per cached object is
    128. Any additional tags are ignored", and the allowed characters
    (https://techdocs.akamai.com/purge-cache/docs/purge-content-cache-tag); "Note that the
    default Akamai max reply headers size is 8192 bytes" (Fast Purge guide, "Cache tag
    requirements", learn.akamai.com GUID-58874706). 128 keys of 128 characters do not fit in
    8,192 bytes of headers, so freshcache budgets 4,096 bytes for the value and leaves the rest
    to the page's other headers. "Ordinarily, your end users never receive the Edge-Cache-Tag
    header" (https://techdocs.akamai.com/purge-cache/docs/assign-cache-tags).

**Uncacheable for the edge.** Every response freshcache marks so gets ``Cache-Control:
private`` (RFC 9111 §5.2.2.7: a shared cache must not store it), which each of the four honours
by default, plus the edge's own override header, since an edge prefers it to ``Cache-Control``:

* Fastly and Varnish: ``Surrogate-Control: no-store``. Fastly "will prefer Surrogate-Control over
  Cache-Control if both exist" (.../http-headers/Surrogate-Control/) and by default passes
  responses with ``Cache-Control: private``; Varnish's built-in VCL makes a response
  uncacheable when ``Surrogate-control ~ "(?i)no-store"``, or, only when there is no
  Surrogate-Control, when Cache-Control has no-cache, no-store or private (builtin.vcl,
  ``vcl_beresp_control``).
* Cloudflare: ``Cloudflare-CDN-Cache-Control: no-store``, which Cloudflare evaluates instead of
  ``Cache-Control`` and does not pass on
  (https://developers.cloudflare.com/cache/concepts/cdn-cache-control/). A Cache Rule that sets
  cache directives takes precedence over both (same page): never point one at pages served
  through freshcache.
* Akamai: ``Edge-Control: no-store``, Akamai's header for edge-only directives; "any NO_STORE or
  BYPASS_CACHE HTTP headers set on the origin's content override" the property's caching
  behaviour (https://techdocs.akamai.com/property-mgr/reference/latest-caching).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EDGES", "Edge"]


@dataclass(frozen=True)
class Edge:
    """One kind of edge cache: the header it reads keys from, and what fits in it."""

    #: The name used in ``FRESHCACHE["EDGE"]["KEYS"]``.
    name: str
    #: The response header that carries the keys.
    header: str
    #: What separates two keys in that header.
    separator: str
    #: Most keys in one header, or ``None`` (no documented limit).
    max_keys: int | None
    #: The budget for the header's value, in bytes (see the module docstring for each).
    max_header_bytes: int
    #: The header (and its value) that tells this edge not to store a response.
    no_store: tuple[str, str]
    #: Whether the edge removes the key header before responding to clients.
    strips_header: bool


#: The known edges by name.
EDGES: dict[str, Edge] = {
    edge.name: edge
    for edge in (
        Edge("fastly", "Surrogate-Key", " ", None, 16384,
             ("Surrogate-Control", "no-store"), True),
        Edge("cloudflare", "Cache-Tag", ",", 1000, 16000,
             ("Cloudflare-CDN-Cache-Control", "no-store"), True),
        Edge("varnish", "xkey", " ", None, 8000, ("Surrogate-Control", "no-store"), False),
        Edge("akamai", "Edge-Cache-Tag", ",", 128, 4096, ("Edge-Control", "no-store"), True),
    )
}  # fmt: skip
