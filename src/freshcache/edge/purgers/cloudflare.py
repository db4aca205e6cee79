"""Cloudflare: purge by cache tag through the official SDK (``pip install
'django-freshcache[cloudflare]'``, the ``cloudflare`` package).

``POST /zones/{zone_id}/purge_cache`` with ``{"tags": [...]}``. Limits
(https://developers.cloudflare.com/cache/how-to/purge-cache/, "The current purge limits are
applied per account"): "Max operations per request" 100 on every plan (older documentation said
30 tags per call; freshcache sends at most 100, set ``BATCH`` lower if your account needs it),
and requests per account: Free 5 a minute (bucket 25), Pro 5 a second (25), Business 10 (50),
Enterprise 50 (500). The default ``RATE``/``BURST`` are the Free plan's; raise them to your
plan's. A 429 is retried after its ``Retry-After``. Tags are compared case-insensitively.
The SDK's own retries are turned off: the queue retries, durably.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from .base import REQUIRED, PurgeFailed, Purger, check_text, retry_after

__all__ = ["Cloudflare"]


class Cloudflare(Purger):
    """Options: ``ZONE_ID``, ``API_TOKEN`` (with the Cache Purge permission), ``BASE_URL``
    (``https://api.cloudflare.com/client/v4``)."""

    OPTIONS: ClassVar[dict[str, Any]] = {
        "ZONE_ID": REQUIRED,
        "API_TOKEN": REQUIRED,
        "BASE_URL": "https://api.cloudflare.com/client/v4",
    }
    MAX_KEYS: ClassVar[int] = 100
    RATE: ClassVar[float | None] = 5 / 60
    BURST: ClassVar[int] = 25

    @classmethod
    def check(cls, options: Mapping[str, Any]) -> list[str]:
        return [*super().check(options),
                *check_text(options, ("ZONE_ID", "API_TOKEN"), urls=("BASE_URL",))]  # fmt: skip

    _sdk: Any = None

    def _client(self) -> Any:
        if self._sdk is None:
            try:
                import cloudflare
            except ImportError:
                raise PurgeFailed(
                    "the cloudflare package is not installed: "
                    "pip install 'django-freshcache[cloudflare]'"
                ) from None
            self._sdk = cloudflare.Cloudflare(
                api_token=self.options["API_TOKEN"],
                base_url=self.options["BASE_URL"].rstrip("/"),
                max_retries=0,
                timeout=self.timeout,
            )
        return self._sdk

    def purge(self, keys: list[str]) -> None:
        client = self._client()
        import cloudflare

        try:
            client.cache.purge(zone_id=self.options["ZONE_ID"], tags=list(keys))
        except cloudflare.APIStatusError as exc:
            raise PurgeFailed(
                f"Cloudflare answered {exc.status_code}: {exc.message}",
                status=exc.status_code,
                retry_after=retry_after(exc.response.headers.get("Retry-After")),
            ) from None
        except cloudflare.APIError as exc:  # connection refused, timed out
            raise PurgeFailed(f"Cloudflare: {type(exc).__name__}: {exc}") from None
