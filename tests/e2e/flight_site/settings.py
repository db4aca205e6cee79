"""The example blog plus two 100 ms pages that count their renders (single flight, issue 9, 6).

``FLIGHT_RENDER_LOG``: the file each render appends one line to (shared by every worker).
``FLIGHT_FRESHCACHE``: a JSON object of ``FRESHCACHE`` keys to override (``LEASE_SECONDS``).
"""

import json
import os

from mysite.settings import *  # noqa: F403
from mysite.settings import FRESHCACHE

ROOT_URLCONF = "tests.e2e.flight_site.urls"
FRESHCACHE = {**FRESHCACHE, **json.loads(os.environ.get("FLIGHT_FRESHCACHE") or "{}")}
