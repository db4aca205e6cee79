"""The ``FRESHCACHE`` examples shown in docs/edge.md, each run by the tests (test_docs.py checks
that the guide shows exactly these)."""

from __future__ import annotations

from typing import Any

#: Varnish with the xkey vmod in front of the site.
VARNISH: dict[str, Any] = {"EDGE": {"KEYS": ["varnish"]}}

#: Fastly.
FASTLY: dict[str, Any] = {"EDGE": {"KEYS": ["fastly"]}}

#: Cloudflare (Enterprise: purge by tag).
CLOUDFLARE: dict[str, Any] = {"EDGE": {"KEYS": ["cloudflare"]}}

#: Akamai.
AKAMAI: dict[str, Any] = {"EDGE": {"KEYS": ["akamai"]}}

#: Varnish behind Cloudflare, with a proxy between them that accepts 4 KiB per header.
VARNISH_AND_CLOUDFLARE: dict[str, Any] = {
    "EDGE": {"KEYS": ["varnish", "cloudflare"], "MAX_HEADER_BYTES": 4096}
}

#: Local development with the production settings: no keys leave the server.
LOCAL: dict[str, Any] = {"EDGE": {"KEYS": ["varnish"], "SEND_KEYS": False}}

#: Varnish, purged after every write.
VARNISH_PURGED: dict[str, Any] = {
    "EDGE": {
        "KEYS": ["varnish"],
        "PURGERS": [
            {"BACKEND": "freshcache.edge.purgers.Varnish", "URLS": ["http://127.0.0.1:6081/"]},
        ],
    }
}

#: Fastly, purged after every write (the token from the environment in real settings).
FASTLY_PURGED: dict[str, Any] = {
    "EDGE": {
        "KEYS": ["fastly"],
        "PURGERS": [
            {
                "BACKEND": "freshcache.edge.purgers.Fastly",
                "SERVICE_ID": "SU1Z0isxPaozGVKXdv0eY",
                "API_TOKEN": "YOUR_FASTLY_TOKEN",
            },
        ],
    }
}

#: Cloudflare, purged after every write, at the Pro plan's rate (5 requests a second).
CLOUDFLARE_PURGED: dict[str, Any] = {
    "EDGE": {
        "KEYS": ["cloudflare"],
        "PURGERS": [
            {
                "BACKEND": "freshcache.edge.purgers.Cloudflare",
                "ZONE_ID": "023e105f4ecef8ad9ca31a8372d0c353",
                "API_TOKEN": "YOUR_CLOUDFLARE_TOKEN",
                "RATE": 5,
                "BURST": 25,
            },
        ],
    }
}

#: Static publishing: the front page and the post pages written for nginx (tests replace the
#: root with a temporary directory).
PUBLISHED: dict[str, Any] = {
    "EDGE": {"PUBLISH": {"ROOT": "/srv/www/published", "URLS": [r"^/$", r"^/post/"]}}
}

ALL = {
    "VARNISH": VARNISH,
    "FASTLY": FASTLY,
    "CLOUDFLARE": CLOUDFLARE,
    "AKAMAI": AKAMAI,
    "VARNISH_AND_CLOUDFLARE": VARNISH_AND_CLOUDFLARE,
    "LOCAL": LOCAL,
    "VARNISH_PURGED": VARNISH_PURGED,
    "FASTLY_PURGED": FASTLY_PURGED,
    "CLOUDFLARE_PURGED": CLOUDFLARE_PURGED,
    "PUBLISHED": PUBLISHED,
}
