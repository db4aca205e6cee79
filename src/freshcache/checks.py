"""System checks for ``FRESHCACHE`` (listed with their hints in docs/checks.md)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.conf import settings as django_settings
from django.core.checks import CheckMessage, Error, Warning
from django.core.exceptions import ImproperlyConfigured

__all__ = ["check_settings"]


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Validate ``FRESHCACHE``; never raise, never block on a slow server for long."""
    from .conf import get_settings
    from .stores import SCHEMES

    try:
        settings = get_settings()
    except ImproperlyConfigured as exc:
        return [
            Error(str(exc), hint="See docs/settings.md for every setting.", id="freshcache.E001")
        ]
    messages: list[CheckMessage] = []
    for name, url in sorted(settings.stores.items()):
        scheme = urlsplit(url).scheme
        if scheme not in SCHEMES:
            messages.append(
                Error(
                    f"Store {name!r} has URL {url!r} with unknown scheme {scheme!r}.",
                    hint="Use memory://, database://, redis:// or rediss://.",
                    id="freshcache.E002",
                )
            )
        elif (invalid := _construct(name, url)) is not None:
            messages.append(invalid)
        elif scheme == "memory" and not django_settings.DEBUG:
            messages.append(
                Warning(
                    f"Store {name!r} is memory:// with DEBUG = False.",
                    hint="The memory store lives in one process: writes made by other processes "
                    "(other workers, manage.py shell) do not invalidate it. Use database:// or "
                    "redis:// in production.",
                    id="freshcache.W001",
                )
            )
        elif scheme in ("redis", "rediss"):
            messages.extend(_check_redis(name, url))
        elif scheme == "database":
            alias = parse_qs(urlsplit(url).query).get("alias", ["default"])[0]
            if alias not in django_settings.DATABASES:
                messages.append(
                    Error(
                        f"Store {name!r} uses database alias {alias!r}, which is not in DATABASES.",
                        hint="Name an alias from DATABASES: database://?alias=NAME.",
                        id="freshcache.E004",
                    )
                )
    return messages


def _construct(name: str, url: str) -> CheckMessage | None:
    """Build the store from its URL (no connection is made) to catch a malformed URL now.

    Without this, a bad port or option (``redis://host:port6379``, ``?socket_timeout=fast``)
    raised out of the check run, or only at the first cached call.
    """
    from .stores import from_url

    try:
        store = from_url(name, url)
    except ImportError:
        return None  # reported by _check_redis as freshcache.E003
    except (ValueError, TypeError, ImproperlyConfigured) as exc:
        return Error(
            f"Store {name!r} has URL {url!r}, which cannot be used: {exc}.",
            hint="Check the host, port and options; see docs/settings.md for store URLs.",
            id="freshcache.E005",
        )
    store.close()
    return None


def _check_redis(name: str, url: str) -> list[CheckMessage]:
    try:
        import redis  # noqa: F401
    except ImportError:
        return [
            Error(
                f"Store {name!r} is a Redis URL but the redis package is not installed.",
                hint="pip install 'django-freshcache[redis]'",
                id="freshcache.E003",
            )
        ]
    from .stores import get_store
    from .stores.redis import RedisStore

    store = get_store(name)
    if isinstance(store, RedisStore) and not store.ping():
        return [
            Warning(
                f"Store {name!r} ({url}) cannot be reached now.",
                hint="freshcache computes uncached while Redis is down; check the URL and that "
                "the server is running.",
                id="freshcache.W002",
            )
        ]
    return []
