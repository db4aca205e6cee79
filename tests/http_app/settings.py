"""The test settings with a test database of its own, so the page-cache tests (and the servers
they start) can run beside the rest of the suite: ``pytest --ds tests.http_app.settings``."""

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES

DATABASES["default"]["TEST"] = {"NAME": "test_freshcache_http"}
