"""``make bench``: every benchmark, then the tables, JSON and charts in bench/results/.

    .venv/bin/python bench/run.py [--quick] [--only throughput,capture,fanout,freshness]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (about 2 minutes)")
    parser.add_argument("--only", default="", help="comma-separated subset of the benchmarks")
    parser.add_argument("--no-seed", action="store_true", help="reuse the seeded bench database")
    args = parser.parse_args()
    only = {name for name in args.only.split(",") if name}
    started = time.monotonic()
    if not args.no_seed:
        common.log("creating and seeding the bench database")
        common.fresh_blog()
    results = {}
    from bench import throughput

    if not only or "throughput" in only:
        results["throughput"] = throughput.run(args.quick)
        common.write_json("throughput.json", results["throughput"])
    common.log(f"done in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
