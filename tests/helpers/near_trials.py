"""The near cache's adversarial trials: a write returns in one process, another reads at once.

Shared by ``tests/test_near_cache.py`` (hundreds of trials in ``make test``) and
``bench/near_adversarial.py`` (10,000 per mode in ``make bench``), so the test and its run at
scale cannot drift apart. Needs only a Redis server: ``server`` is any object with ``url``,
``client()``, ``pause()`` (SIGSTOP) and ``resume()``, such as ``tests.helpers.RedisServer``.

Trial ``i``, on key ``k<i>`` depending on tag ``t<i>`` (docs/internals.md, "The near cache"):

1. The reader (process B, a Redis store with a near cache) stores ``k<i>`` and looks it up once:
   the trial is *armed* if that lookup was served from the near cache (no Redis call). It tells
   the writer through a pipe.
2. The writer (this process, a Redis store without a near cache) bumps ``t<i>``; past the socket
   timeout the bump gives up and the write returns anyway (the invalidation log keeps it). It
   tells the reader through the pipe the moment the bump returned.
3. The reader looks ``k<i>`` up again. A hit from the near cache is stale whether the bump got
   through or not (the write has returned); a hit from Redis is stale only if the bump got
   through (a bump that gave up waits in the invalidation log, whose relay is tested elsewhere).

Faults, every ``period`` trials, between steps 1 and 3: ``"kill"`` closes every subscription
(``CLIENT KILL TYPE pubsub``), ``"pause"`` stops the server (SIGSTOP) and resumes it 50 ms after
the writer signalled. They alternate between just before the bump and just after it returned.
"""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import asdict, dataclass
from typing import Any

from freshcache.stores import Hit, StoreUnavailable
from freshcache.stores.near import NearStore
from freshcache.stores.redis import RedisStore

__all__ = ["FAULTS", "Trials", "run_trials", "wait_ready"]

#: Fault name -> trials between two faults (the first comes half a period in).
FAULTS = {"": 0, "kill": 50, "pause": 100}
#: Seconds to wait for the reader at any step before giving up on it.
PATIENCE = 30.0


@dataclass
class Trials:
    """What the trials saw. ``stale`` must be 0."""

    trials: int
    fault: str
    faults: int
    stale: int
    #: Trials whose first lookup was served from the reader's near cache.
    armed: int
    #: Faults that came while the reader's near cache held the entry.
    armed_faults: int
    #: The read after the write: from the near cache (always stale), from Redis (a hit or a
    #: miss), or not at all (Redis unreachable: the request computes uncached).
    after_from_near: int
    after_from_redis: int
    after_unavailable: int
    #: Hits from Redis after a bump that gave up (not stale: see the module docstring).
    redis_hits_after_gave_up: int
    bumps_gave_up: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def wait_ready(store: NearStore, seconds: float = 5.0) -> None:
    """Wait until ``store``'s invalidation channel is healthy; AssertionError after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not store.channel.ready():
        assert time.monotonic() < deadline, "the invalidation channel never became healthy"
        time.sleep(0.01)


def _reader(url: str, conn: Any, trials: int) -> None:
    store = RedisStore("default", url, socket_timeout=0.25).near()
    assert isinstance(store, NearStore)
    wait_ready(store)
    counts = dict.fromkeys(
        ("stale", "armed", "near", "redis", "unavailable", "redis_hits_after_gave_up"), 0
    )
    for i in range(trials):
        key, tag = f"k{i}", f"t{i}"
        armed = False
        try:
            store.set(key, b"old", [tag], store.begin())
            before = store.near.hits  # counted by the near cache when it answers a lookup
            armed = isinstance(store.lookup(key), Hit) and store.near.hits > before
        except StoreUnavailable:
            pass
        counts["armed"] += armed
        conn.send(("ready", i, armed))
        if not conn.poll(PATIENCE):
            return
        message, n, bumped = conn.recv()  # the writer's bump returned (or gave up)
        if (message, n) != ("returned", i):
            raise RuntimeError(f"out of step: {message, n} in trial {i}")
        before = store.near.hits
        try:
            found = store.lookup(key)
        except StoreUnavailable:
            counts["unavailable"] += 1
            continue
        from_near = store.near.hits > before
        counts["near" if from_near else "redis"] += 1
        if isinstance(found, Hit):
            if from_near or bumped:
                counts["stale"] += 1
            else:
                counts["redis_hits_after_gave_up"] += 1
    conn.send(("done", counts))
    store.close()


def run_trials(server: Any, trials: int, fault: str = "", period: int = 0) -> Trials:
    """Run ``trials`` trials against ``server`` with ``fault`` ("", "kill" or "pause") every
    ``period`` trials (default: :data:`FAULTS`)."""
    period = period or FAULTS[fault]
    url = f"{server.url}?near_cache=4mb"
    ctx = multiprocessing.get_context("fork")
    mine, theirs = ctx.Pipe()
    reader = ctx.Process(target=_reader, args=(url, theirs, trials), daemon=True)
    started = time.monotonic()
    reader.start()
    writer = RedisStore("default", server.url, socket_timeout=0.25)
    admin = server.client()
    faults = armed_faults = gave_up = 0

    def receive() -> Any:
        if not mine.poll(PATIENCE):
            raise RuntimeError(f"the reader did not answer in {PATIENCE:.0f} s")
        return mine.recv()

    def inject() -> None:
        if fault == "kill":
            admin.client_kill_filter(_type="pubsub")
        else:
            server.pause()

    try:
        for i in range(trials):
            message, n, armed = receive()
            if (message, n) != ("ready", i):
                raise RuntimeError(f"the reader is out of step at trial {i}")
            faulty = bool(fault) and i % period == period // 2
            after = faulty and (i // period) % 2 == 1
            if faulty and not after:
                inject()
            try:
                writer.bump([f"t{i}"])
                bumped = True
            except StoreUnavailable:
                bumped = False  # given up: the invalidation log keeps it; the write returns
                gave_up += 1
            if after:
                inject()
            mine.send(("returned", i, bumped))
            faults += faulty
            armed_faults += faulty and armed
            if faulty and fault == "pause":
                time.sleep(0.05)
                server.resume()
        message, counts = receive()
        if message != "done":
            raise RuntimeError(f"the reader ended with {message!r}")
    finally:
        reader.join(PATIENCE)
        if reader.is_alive():
            reader.kill()
        writer.close()
    return Trials(
        trials=trials,
        fault=fault or "none",
        faults=faults,
        stale=counts["stale"],
        armed=counts["armed"],
        armed_faults=armed_faults,
        after_from_near=counts["near"],
        after_from_redis=counts["redis"],
        after_unavailable=counts["unavailable"],
        redis_hits_after_gave_up=counts["redis_hits_after_gave_up"],
        bumps_gave_up=gave_up,
        seconds=round(time.monotonic() - started, 2),
    )
