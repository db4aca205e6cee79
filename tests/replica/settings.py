"""The suite's settings with ``default`` on a throwaway primary and ``replica`` on its streaming
standby (tests/helpers/pg_standby.py; ports from FRESHCACHE_REPLICA_PORTS="primary,standby")."""

import os

from tests.settings import *  # noqa: F403

_primary, _, _standby = os.environ["FRESHCACHE_REPLICA_PORTS"].partition(",")

DATABASES = {
    "default": {"ENGINE": "django.db.backends.postgresql", "NAME": "postgres",
                "USER": "postgres", "HOST": "127.0.0.1", "PORT": _primary},
    "replica": {"ENGINE": "django.db.backends.postgresql", "NAME": "postgres",
                "USER": "postgres", "HOST": "127.0.0.1", "PORT": _standby,
                "TEST": {"MIRROR": "default"}},
}  # fmt: skip
ROOT_URLCONF = "tests.replica.scenario"
