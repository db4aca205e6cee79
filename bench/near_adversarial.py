"""The near cache's adversarial test at scale (issue 11): a write returns, another process reads.

    python -m bench.near_adversarial TRIALS [MODE,...]   (prints one JSON line)

The trials of ``tests/test_near_cache.py``, imported from ``tests/helpers/near_trials.py`` (the
one module of ``tests/`` the bench uses, so the two cannot drift apart): a writer process bumps a
tag and, the moment the bump returned, signals a reader process through a pipe; the reader,
whose near cache held an entry depending on that tag, looks it up. Every mode runs on a
throwaway ``redis-server`` of its own (``bench/throwaway_redis.py``), so the faults touch no one
else:

  healthy  no fault
  kill     every 50 trials, ``CLIENT KILL TYPE pubsub`` (the reader's subscription is cut)
  pause    every 100 trials, the server stopped with SIGSTOP and resumed 50 ms after the writer
           signalled (its bump gave up after the socket timeout, or returned just before)

Faults alternate between just before the bump and just after it returned. For each mode: the
trials, the stale reads (the target is 0), how many trials were *armed* (the entry was served
from the reader's near cache just before the write: the near cache was really in use), and where
the read after the write was served from.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from tests.helpers.near_trials import run_trials

from bench.throwaway_redis import RedisServer

MODES = {"healthy": "", "kill": "kill", "pause": "pause"}


def main(trials: int, modes: list[str]) -> dict[str, Any]:
    # Each pause makes the writer log that Redis is unreachable, then reachable: expected here.
    logging.getLogger("freshcache").setLevel(logging.ERROR)
    result: dict[str, Any] = {"trials_per_mode": trials, "modes": {}}
    for mode in modes:
        with RedisServer() as server:
            result["modes"][mode] = run_trials(server, trials, MODES[mode]).as_dict()
    return result


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    wanted = sys.argv[2].split(",") if len(sys.argv) > 2 else list(MODES)
    print(json.dumps(main(count, wanted)))
