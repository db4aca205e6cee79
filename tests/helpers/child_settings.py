"""Settings for child processes of the concurrency tests: the test database and a given store.

pytest-django runs the suite against a test database (``test_freshcache``); children must use
that same database, named in ``FRESHCACHE_CHILD_DB``, and the store in ``FRESHCACHE_CHILD_STORE``.
"""

import os

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES

DATABASES = {
    "default": {**DATABASES["default"], "NAME": os.environ["FRESHCACHE_CHILD_DB"]},
}
FRESHCACHE = {
    "STORE": os.environ["FRESHCACHE_CHILD_STORE"],
    "BREAKER_SECONDS": 0.5,
}
