"""freshcache's explicit API, or a do-nothing stand-in while the core is being written.

Temporary: once ``freshcache`` exports ``cached`` this module goes away and the blog imports
``from freshcache import cached, depends_on, invalidate`` directly.
"""

from collections.abc import Callable
from typing import Any

try:
    from freshcache import cached, depends_on, invalidate
except ImportError:
    # Without the core, caching nothing is the only behaviour that is never stale.

    def cached(func: Callable[..., Any] | None = None, **options: Any) -> Any:
        if func is None:
            return lambda f: f
        return func

    def depends_on(*tags_or_objects: Any) -> None:
        return None

    def invalidate(*tags_or_objects: Any) -> None:
        return None


__all__ = ["cached", "depends_on", "invalidate"]
