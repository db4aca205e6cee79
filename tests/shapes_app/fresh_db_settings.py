"""The test settings, on a database named by ``SHAPES_FRESH_DB``: for running ``migrate`` on a
fresh database in a subprocess (tests/capture/test_historical_models.py)."""

import os

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES

DATABASES = {"default": {**DATABASES["default"], "NAME": os.environ["SHAPES_FRESH_DB"]}}
