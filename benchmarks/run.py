"""Run every benchmark, print the figures and write benchmarks/results.json.

python -m benchmarks.run [--only ratelimit,normalizer,replay,backfill,failures,storage,memory,
                                maintenance,object_store,history,flows,
                                reconciliation]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from benchmarks import TINY_ENV

PARTS = (
    "ratelimit",
    "normalizer",
    "replay",
    "backfill",
    "failures",
    "storage",
    "memory",
    "maintenance",
    "object_store",
    "history",
    "flows",
    "reconciliation",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated subset")
    parser.add_argument("--tiny", action="store_true",
                        help="every part once at a tiny size (the test suite's check that they "
                        "still run; the figures mean nothing)")  # fmt: skip
    parser.add_argument("--out", type=Path, help="where to write the figures (default "
                        "benchmarks/results.json)")  # fmt: skip
    args = parser.parse_args()
    if args.tiny:
        os.environ[TINY_ENV] = "1"
    chosen = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(chosen) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {sorted(unknown)}; choose from {', '.join(PARTS)}")
    out_path = args.out or Path(__file__).with_name("results.json")
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    results["machine"] = {"cores": os.cpu_count(), "python": platform.python_version(),
                          "platform": platform.platform()}  # fmt: skip
    started = time.monotonic()
    for part in chosen:
        print(f"[{part}]", flush=True)
        module = __import__(f"benchmarks.{part}", fromlist=["run"])
        results[part] = module.run()
    results["total_seconds"] = round(time.monotonic() - started, 1)
    out_path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwrote {out_path} ({results['total_seconds']}s, {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
