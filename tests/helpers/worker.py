"""A writer or reader process for ``tests/test_concurrency.py``.

``python -m tests.helpers.worker ROLE START_NS SECONDS MAX_OPS SEED OUT PK [PK ...]``

Every process waits until ``time.monotonic_ns()`` reaches ``START_NS`` (CLOCK_MONOTONIC is
system-wide on Linux, so all processes share it), then works for ``SECONDS`` or ``MAX_OPS``
operations and writes one JSON line per operation to ``OUT``:

* writer: ``["w", pk, version, acked_ns]``: ``acked_ns`` is taken after the ``atomic()`` block
  (commit, then the bump) returned, the moment the write counts as acknowledged;
* reader: ``["r", pk, version, began_ns, hit]``: ``began_ns`` is taken before the read starts.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time


def main(argv: list[str]) -> None:
    role, start_ns, seconds, max_ops, seed, out_path, *pk_args = argv
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.helpers.child_settings")
    import django

    django.setup()
    from django.db import connection, transaction
    from django.db.models import F

    from freshcache import cached, depends_on, invalidate
    from tests.testapp.models import Item

    pks = [int(pk) for pk in pk_args]
    rng = random.Random(int(seed))

    @cached
    def version_of(pk: int) -> int:
        item = Item.objects.get(pk=pk)
        depends_on(item)
        # Widen the window between reading the row and storing the value, where a write can
        # slip in (the stale-set race).
        if rng.random() < 0.3:
            time.sleep(rng.random() * 0.003)
        return item.value

    lines: list[str] = []
    while time.monotonic_ns() < int(start_ns):
        time.sleep(0.001)
    deadline = time.monotonic() + float(seconds)
    for _ in range(int(max_ops)):
        if time.monotonic() > deadline:
            break
        pk = rng.choice(pks)
        if role == "writer":
            with transaction.atomic():
                Item.objects.filter(pk=pk).update(value=F("value") + 1)
                item = Item.objects.get(pk=pk)
                invalidate(item)
            acked = time.monotonic_ns()
            lines.append(json.dumps(["w", pk, item.value, acked]))
            time.sleep(rng.random() * 0.01)
        else:
            began = time.monotonic_ns()
            outcome = version_of.outcome(pk)
            lines.append(json.dumps(["r", pk, outcome.value, began, outcome.hit]))
    connection.close()
    with open(out_path, "w") as out:
        out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
