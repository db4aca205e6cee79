"""Which stacks early hits may answer above (``freshcache.http.early``): the middleware whose
per-request work is known, those an early hit must never skip, and the reasons
``EarlyHitMiddleware`` would not be used (``manage.py check``: freshcache.W012)."""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.checks import CheckMessage, Warning
from django.utils.module_loading import import_string

from ...conf import get_settings

__all__ = [
    "KNOWN_MIDDLEWARE", "LOCALE", "NEVER_TRUSTED", "PATH", "check_early_hits", "is_early",
    "middleware_reads", "why_off",
]  # fmt: skip

PATH = "freshcache.middleware.EarlyHitMiddleware"
LOCALE = "django.middleware.locale.LocaleMiddleware"

#: Middleware whose per-request work is known, with the request headers (``META`` names) each
#: reads. For a request with no cookie and no ``Authorization`` each is a function of those
#: headers, the scheme, host and path: the session and messages are empty, the user anonymous,
#: the CSRF cookie absent (a page that needs one sets it: never recorded). The ones that are not
#: are in :data:`NEVER_TRUSTED`.
KNOWN_MIDDLEWARE: dict[str, tuple[str, ...]] = {
    "django.middleware.security.SecurityMiddleware": (),
    "django.contrib.sessions.middleware.SessionMiddleware": (),
    "django.middleware.common.CommonMiddleware": (),  # + User-Agent, see middleware_reads
    "django.middleware.csrf.CsrfViewMiddleware": (),
    "django.contrib.auth.middleware.AuthenticationMiddleware": (),
    "django.contrib.auth.middleware.LoginRequiredMiddleware": (),
    "django.contrib.messages.middleware.MessageMiddleware": (),
    "django.middleware.clickjacking.XFrameOptionsMiddleware": (),
    LOCALE: ("HTTP_ACCEPT_LANGUAGE",),
    "django.middleware.http.ConditionalGetMiddleware": (),
    "freshcache.middleware.OutcomeMiddleware": (),
    "freshcache.middleware.CacheMiddleware": (),
    "freshcache.http.middleware.OutcomeMiddleware": (),
    "freshcache.http.middleware.CacheMiddleware": (),
}

#: Middleware an early hit must never skip, with the reason: listed in ``MIDDLEWARE`` they turn
#: early hits off even when vouched for (freshcache.W012 says why).
NEVER_TRUSTED: dict[str, str] = {
    "django.middleware.gzip.GZipMiddleware": (
        "it adds random bytes to each response against BREACH (compress at the proxy instead)"
    ),
    "django.middleware.csp.ContentSecurityPolicyMiddleware": "it sets a nonce per request",
    "django.contrib.sites.middleware.CurrentSiteMiddleware": (
        "it reads the Site from the database, which no early key holds"
    ),
    "django.contrib.flatpages.middleware.FlatpageFallbackMiddleware": (
        "it reads flat pages from the database, outside any cached page"
    ),
    "django.contrib.redirects.middleware.RedirectFallbackMiddleware": (
        "it reads redirects from the database, outside any cached page"
    ),
    "django.contrib.auth.middleware.RemoteUserMiddleware": "it takes identity from a header",
    "django.contrib.auth.middleware.PersistentRemoteUserMiddleware": (
        "it takes identity from a header"
    ),
    "django.middleware.cache.UpdateCacheMiddleware": "it is Django's own page cache",
    "django.middleware.cache.FetchFromCacheMiddleware": "it is Django's own page cache",
    "django.middleware.cache.CacheMiddleware": "it is Django's own page cache",
}


def is_early(name: str) -> bool:
    """Whether the ``MIDDLEWARE`` entry ``name`` is this middleware, under any import path."""
    if name in (PATH, "freshcache.http.early.EarlyHitMiddleware"):
        return True
    from . import EarlyHitMiddleware

    try:
        found = import_string(name)
    except ImportError:
        return False  # Django reports it when it loads the middleware
    return isinstance(found, type) and issubclass(found, EarlyHitMiddleware)


def why_off() -> str | None:
    """Why ``EarlyHitMiddleware`` would not be used with the current settings (``None``: it
    would be, or it is not in ``MIDDLEWARE``). Reported by ``manage.py check``
    (freshcache.W012) when it is in ``MIDDLEWARE``."""
    middleware = list(django_settings.MIDDLEWARE)
    places = [i for i, name in enumerate(middleware) if is_early(name)]
    if not places:
        return None
    if places[0] != 0:
        return f"it must be first in MIDDLEWARE, and {middleware[0]!r} is above it"
    if len(places) > 1:
        return "it is in MIDDLEWARE more than once"
    settings = get_settings()
    if not settings.enabled:
        return "freshcache is disabled"
    trusted = set(settings.early_hits_trusted_middleware)
    for name in middleware[1:]:
        if name in NEVER_TRUSTED:
            return (
                f"MIDDLEWARE has {name!r}, which an early hit must never skip: "
                f"{NEVER_TRUSTED[name]}"
            )
        if name not in KNOWN_MIDDLEWARE and name not in trusted:
            return (
                f"MIDDLEWARE has {name!r}, whose per-request work freshcache does not know; "
                f"if it does nothing that differs between two cookie-less GETs of one URL, "
                f"add it to FRESHCACHE['EARLY_HITS_TRUSTED_MIDDLEWARE']"
            )
    if settings.edge.publish is not None:
        return "EDGE['PUBLISH'] is on: every hit may publish its page"
    if settings.shadow.rate:
        return "SHADOW is on: shadow mode checks hits by rendering them again"
    return None


def check_early_hits(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """freshcache.W012: ``EarlyHitMiddleware`` is in ``MIDDLEWARE`` but will not be used.
    Not given while ``FRESHCACHE`` has errors (those are reported, and caching is off)."""
    from ...conf import problems

    if problems():
        return []
    reason = why_off()
    if reason is None:
        return []
    return [
        Warning(
            f"EarlyHitMiddleware will not be used: {reason}.",
            hint="See docs/pages.md, \"Early hits\".",
            id="freshcache.W012",
        )
    ]


def middleware_reads() -> tuple[str, ...]:
    names = [h for m in django_settings.MIDDLEWARE for h in KNOWN_MIDDLEWARE.get(m, ())]
    if getattr(django_settings, "DISALLOWED_USER_AGENTS", None):
        names.append("HTTP_USER_AGENT")  # CommonMiddleware refuses some agents
    return tuple(sorted(set(names)))
