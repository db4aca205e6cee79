"""tests.replica.settings plus ``logical``: a database on the primary's cluster standing for a
logical replication subscriber of ``default`` (not in recovery; see tests/replica/attacks.py)."""

from tests.replica.settings import *  # noqa: F403
from tests.replica.settings import DATABASES, _primary

DATABASES = {
    **DATABASES,
    "logical": {"ENGINE": "django.db.backends.postgresql", "NAME": "logical",
                "USER": "postgres", "HOST": "127.0.0.1", "PORT": _primary,
                "TEST": {"MIRROR": "default"}},
}  # fmt: skip
