"""Fastly: a batch surrogate-key purge through the official SDK (``pip install
'django-freshcache[fastly]'``, the ``fastly`` package).

``POST /service/{service_id}/purge`` with the keys in a JSON body: "Up to 256 surrogate keys can
be purged in one batch request" (Fastly API reference, "Purging", bulk_purge_tag:
https://www.fastly.com/documentation/reference/api/purging/). Purges are authenticated with an
API token (``Fastly-Key``) with the ``purge_select`` scope. ``SOFT``: mark pages stale instead of
removing them (``Fastly-Soft-Purge: 1``); only with ``stale-while-revalidate`` or
``stale-if-error`` may Fastly then serve them, which freshcache's pages never set.

The rate limit default (10 requests a second, bursts of 20) is freshcache's, not Fastly's: set
``RATE``/``BURST`` to your account's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from .base import REQUIRED, PurgeFailed, Purger, check_text, retry_after

__all__ = ["Fastly"]


class Fastly(Purger):
    """Options: ``SERVICE_ID``, ``API_TOKEN``, ``BASE_URL`` (``https://api.fastly.com``),
    ``SOFT`` (``False``)."""

    OPTIONS: ClassVar[dict[str, Any]] = {
        "SERVICE_ID": REQUIRED,
        "API_TOKEN": REQUIRED,
        "BASE_URL": "https://api.fastly.com",
        "SOFT": False,
    }
    MAX_KEYS: ClassVar[int] = 256
    RATE: ClassVar[float | None] = 10.0
    BURST: ClassVar[int] = 20

    @classmethod
    def check(cls, options: Mapping[str, Any]) -> list[str]:
        wrong = [*super().check(options),
                 *check_text(options, ("SERVICE_ID", "API_TOKEN"), urls=("BASE_URL",))]  # fmt: skip
        if not isinstance(options.get("SOFT", False), bool):  # "no" would soft-purge
            wrong.append(f"['SOFT'] must be True or False, not {options['SOFT']!r}")
        return wrong

    _api: Any = None

    def _client(self) -> Any:
        if self._api is None:
            try:
                import fastly
                from fastly.api.purge_api import PurgeApi
            except ImportError:
                raise PurgeFailed(
                    "the fastly package is not installed: pip install 'django-freshcache[fastly]'"
                ) from None
            config = fastly.Configuration(host=self.options["BASE_URL"].rstrip("/"))
            config.api_token = self.options["API_TOKEN"]
            self._api = PurgeApi(fastly.ApiClient(config))
        return self._api

    def purge(self, keys: list[str]) -> None:
        api = self._client()
        from fastly.exceptions import ApiException
        from fastly.model.purge_response import PurgeResponse

        extra: dict[str, Any] = {"fastly_soft_purge": 1} if self.options["SOFT"] else {}
        try:
            api.bulk_purge_tag(
                service_id=self.options["SERVICE_ID"],
                purge_response=PurgeResponse(surrogate_keys=list(keys)),
                _request_timeout=self.timeout,
                **extra,
            )
        except ApiException as exc:
            headers = exc.headers or {}
            raise PurgeFailed(
                f"Fastly answered {exc.status} {exc.reason}",
                status=exc.status,
                retry_after=retry_after(headers.get("Retry-After")),
            ) from None
        except Exception as exc:  # urllib3: refused, reset, timed out
            raise PurgeFailed(f"Fastly: {type(exc).__name__}: {exc}") from None
