"""Several OS processes share one store: writers invalidate, readers read; nobody reads stale.

Writers bump a row's ``value`` (its version) inside ``transaction.atomic()`` and invalidate the
row; readers read the version through a ``@cached`` function. All processes record
``time.monotonic_ns()`` (system-wide on Linux). The oracle (reliability notes, section 0): a
read that *began* after a write was acknowledged must return that write's version or a newer
one. Run against the Redis store and against the database store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from django.db import connection

from tests.helpers import RedisServer
from tests.testapp.models import Item

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parent.parent
WRITERS = 2
READERS = 3
SECONDS = 5.0
MAX_OPS = 20_000
KEYS = 4


def run_workers(store_url: str, tmp_path: Path) -> tuple[list[list], list[list]]:
    pks = [str(Item.objects.create(name=f"c{i}", value=0).pk) for i in range(KEYS)]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.helpers.child_settings",
        "FRESHCACHE_CHILD_DB": connection.settings_dict["NAME"],
        "FRESHCACHE_CHILD_STORE": store_url,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "example")]),
    }
    # Start together once every process has had time to import Django.
    start_ns = time.monotonic_ns() + 3_000_000_000
    procs = []
    outputs = []
    for i in range(WRITERS + READERS):
        role = "writer" if i < WRITERS else "reader"
        out = tmp_path / f"{role}-{i}.jsonl"
        outputs.append(out)
        args = [role, str(start_ns), str(SECONDS), str(MAX_OPS), str(i), str(out), *pks]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.helpers.worker", *args],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        )
    failures = []
    for proc in procs:
        try:
            output, _ = proc.communicate(timeout=SECONDS + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        if proc.returncode != 0:
            failures.append(output.decode(errors="replace")[-3000:])
    assert not failures, "a worker failed:\n" + "\n---\n".join(failures)
    writes, reads = [], []
    for out in outputs:
        for line in out.read_text().splitlines():
            if line:
                record = json.loads(line)
                (writes if record[0] == "w" else reads).append(record)
    return writes, reads


def stale_reads(writes: list[list], reads: list[list]) -> list[str]:
    """Reads that began after a write of the same row was acknowledged, and saw an older version."""
    acked: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for _, pk, version, acked_ns in writes:
        acked[pk].append((acked_ns, version))
    for history in acked.values():
        history.sort()
    problems = []
    for _, pk, version, began_ns, hit in reads:
        newest = max((v for t, v in acked[pk] if t < began_ns), default=0)
        if version < newest:
            problems.append(
                f"row {pk}: read began at {began_ns} and got version {version} "
                f"({'hit' if hit else 'miss'}), but version {newest} was acknowledged before"
            )
    return problems


def check(writes: list[list], reads: list[list]) -> None:
    # Floors low enough for a loaded 2-core CI machine, high enough to mean something.
    assert len(writes) >= 25, f"only {len(writes)} writes: the test proves nothing"
    assert len(reads) >= 250, f"only {len(reads)} reads: the test proves nothing"
    hits = sum(1 for r in reads if r[4])
    assert hits >= 25, f"only {hits} cache hits: the cache was hardly used"
    assert len(reads) - hits >= 25, "too few misses: no computation raced a write"
    problems = stale_reads(writes, reads)
    print(f"{len(writes)} writes, {len(reads)} reads ({hits} hits), {len(problems)} stale")
    assert problems == [], f"{len(problems)} stale read(s) of {len(reads)}:\n" + "\n".join(
        problems[:20]
    )


@pytest.mark.redis
def test_processes_sharing_the_redis_store_never_read_stale(
    transactional_db: None, tmp_path: Path
) -> None:
    with RedisServer() as server:
        writes, reads = run_workers(server.url, tmp_path)
    check(writes, reads)


def test_processes_sharing_the_database_store_never_read_stale(
    transactional_db: None, tmp_path: Path
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the multi-process test needs PostgreSQL")
    writes, reads = run_workers("database://", tmp_path)
    check(writes, reads)


def test_the_checker_catches_a_stale_read() -> None:
    """The oracle itself: a read that began after an acknowledged write and saw older data."""
    writes = [["w", 1, 5, 1_000]]
    reads = [["r", 1, 4, 999, True], ["r", 1, 5, 1_001, True], ["r", 1, 4, 1_002, False]]
    assert stale_reads(writes, reads) == [
        "row 1: read began at 1002 and got version 4 (miss), but version 5 was acknowledged before"
    ]
