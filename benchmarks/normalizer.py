"""Normalizer speed and memory against two references measured in the same run.

Each measurement runs in a fresh process that first loads the payload strings, so peak RSS is
the increase caused by the work alone, not by imports or by the other measurements.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

from benchmarks import tiny
from moestats_dagster.sandbox.generator import campaign_entries, make_campaign

DAY = dt.date(2024, 12, 2)
SIZES = (1_000, 10_000, 50_000)
JSON_NORMALIZE_MAX = 10_000  # the wide, sparse json_normalize frame grows too large beyond this


def write_payloads(path: Path, count: int) -> None:
    """`count` distinct campaigns of the generator's realistic channel mix, one JSON per line."""
    with path.open("w") as fh:
        for i in range(count):
            entries = campaign_entries("WS_BENCH", make_campaign("WS_BENCH", i), DAY.isoformat(),
                                       "TOTAL", "VIEW_THROUGH")  # fmt: skip
            fh.write(json.dumps(entries, separators=(",", ":")) + "\n")


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 1e6


def _worker(path: str, count: int, method: str, out) -> None:
    import pandas as pd

    from moestats_dagster.model.normalize import normalize_partition

    with open(path) as fh:
        payloads = [next(fh).rstrip("\n") for _ in range(count)]
    size_mb = sum(map(len, payloads)) / 1e6
    rows = [("TOTAL", "VIEW_THROUGH", f"c{i:08d}", p) for i, p in enumerate(payloads)]
    before = _rss_mb()
    started = time.perf_counter()
    if method == "floor: json.loads":
        result = [json.loads(p) for p in payloads]
        produced = len(result)
    elif method == "baseline: pandas.json_normalize":
        result = pd.json_normalize([e for p in payloads for e in json.loads(p)])
        produced = len(result)
    else:
        result = normalize_partition(
            rows, workspace_id="WS_BENCH", stat_date=DAY, attribution_order=["VIEW_THROUGH"]
        )
        produced = sum(len(f) for f in result.values())
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # kB -> MB
    out.put({"seconds": seconds, "produced": produced, "payload_mb": size_mb,
             "peak_increase_mb": max(peak - before, 0.0)})  # fmt: skip


def measure(path: Path, count: int, method: str) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(str(path), count, method, queue))
    proc.start()
    result = queue.get(timeout=600)
    proc.join()
    return result


def run() -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "payloads.jsonl"
        sizes = (200,) if tiny() else SIZES
        write_payloads(path, max(sizes))
        for count in sizes:
            methods = ["floor: json.loads", "moestats normalize_partition"]
            if count <= JSON_NORMALIZE_MAX:
                methods.append("baseline: pandas.json_normalize")
            figures = {m: measure(path, count, m) for m in methods}
            floor = figures["floor: json.loads"]["seconds"]
            for method, f in figures.items():
                row = {
                    "campaigns": count,
                    "method": method,
                    "seconds": round(f["seconds"], 3),
                    "x_floor": round(f["seconds"] / floor, 2),
                    "rows_out": f["produced"],
                    "rows_per_s": round(f["produced"] / f["seconds"]),
                    "us_per_campaign": round(f["seconds"] / count * 1e6, 1),
                    "payload_mb": round(f["payload_mb"], 1),
                    "peak_rss_increase_mb": round(f["peak_increase_mb"], 1),
                    "x_payload": round(f["peak_increase_mb"] / f["payload_mb"], 2),
                }
                results.append(row)
                print(
                    f"  normalizer: {count:>6} campaigns  {method:<32} {row['seconds']:>7.3f}s "
                    f"({row['x_floor']}x floor)  peak +{row['peak_rss_increase_mb']} MB "
                    f"({row['x_payload']}x payload)",
                    flush=True,
                )
    return results
