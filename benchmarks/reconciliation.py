"""What proving the lake against MoEngage costs: a workspace-month's reconciliation calls against
the month's daily loads, with nothing to heal; and what turning DuckDB 1.5.5's `common_subplan`
optimizer off costs on the report's and the views' queries.

A workspace of 200 campaigns a day and 30 flows x 5 steps, all 10 metric x attribution
combinations, its days loaded through the stats step as runs make them, then the month
reconciled (materialize, in process). The sandbox's window is scaled to 100 calls per second,
so the figures are calls, not minutes: at MoEngage's 100/min, minutes = calls / 100.

python -m benchmarks.run --only reconciliation
    (MOESTATS_BENCH_DAYS=30, MOESTATS_BENCH_FLOWS=30x5, MOESTATS_BENCH_OTHERS=200)
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import tempfile
import time
from pathlib import Path

from dagster import DagsterInstance, MultiPartitionKey, materialize

from benchmarks import tiny
from moestats_dagster.config import load_settings
from moestats_dagster.lakehouse.lake import Lake, connect
from moestats_dagster.model.schemas import VIEWS
from moestats_dagster.orchestration.build import build_definitions
from moestats_dagster.orchestration.lib.partitions import partition_key
from moestats_dagster.orchestration.lib.resources import MoEngageResource
from moestats_dagster.report.data import build_report
from moestats_dagster.sandbox import SandboxApp, SandboxServer, SandboxWorkspace

WINDOW = 1.0
MONTH = dt.date(2024, 11, 1)


def _sizes() -> tuple[int, int, int, int]:
    """(days, flows, steps per flow, other campaigns a day)."""
    days = int(os.environ.get("MOESTATS_BENCH_DAYS", "2" if tiny() else "30"))
    flows = os.environ.get("MOESTATS_BENCH_FLOWS", "2x2" if tiny() else "30x5")
    count, steps = (int(n) for n in flows.split("x"))
    others = int(os.environ.get("MOESTATS_BENCH_OTHERS", "10" if tiny() else "200"))
    return days, count, steps, others


def _calls(result, node: str) -> int:
    return sum(m.metadata["api_calls"].value for m in result.asset_materializations_for_node(node)
               if "api_calls" in m.metadata)  # fmt: skip


def run() -> dict:
    days, flows, steps, others = _sizes()
    workspace = SandboxWorkspace("WS_PROOF", "key-proof", v5_key="v5-proof", flows=flows,
                                 flow_steps=steps, campaigns_per_day=others)  # fmt: skip
    app = SandboxApp([workspace], window_seconds=WINDOW)
    first = MONTH + dt.timedelta(days=30 - days)
    results: dict = {"days": days, "flows": flows, "steps_per_flow": steps,
                     "campaigns_per_day": others}  # fmt: skip
    with SandboxServer(app) as server, tempfile.TemporaryDirectory() as tmp:
        os.environ.update({"BENCH_KEY": "key-proof", "BENCH_V5_KEY": "v5-proof"})
        path = Path(tmp, "workspaces.yaml")
        path.write_text(
            f'start_date: "{first}"\nworkspaces:\n  - id: WS_PROOF\n    base_url: {server.url}\n'
            "    api_key_env: BENCH_KEY\n    campaigns_api_key_env: BENCH_V5_KEY\n"
        )
        settings = load_settings(path)
        resource = MoEngageResource.for_settings(settings, window_seconds=WINDOW,
                                                 limiter_dir=str(Path(tmp, "rl")))  # fmt: skip
        lake = str(Path(tmp, "lake"))
        defs = build_definitions(settings, database=lake, moengage=resource)
        instance = DagsterInstance.ephemeral()
        stats = [a for a in defs.assets if any(k.path[-1] == "campaign_stats_raw" for k in a.keys)]
        [proof] = [a for a in defs.assets if any(k.path[-1] == "reconciliation" for k in a.keys)]
        daily_calls = 0
        for n in range(days):
            result = materialize(stats, partition_key=partition_key(first + dt.timedelta(n),
                                 "WS_PROOF"), resources=defs.resources, instance=instance)  # fmt: skip
            daily_calls += _calls(result, "campaign_stats")
        started = time.monotonic()
        key = MultiPartitionKey({"period": MONTH.isoformat(), "workspace": "WS_PROOF"})
        result = materialize([proof], partition_key=key, resources=defs.resources,
                             instance=instance)  # fmt: skip
        seconds = time.monotonic() - started
        meta = result.asset_materializations_for_node("moestats__reconciliation")[0].metadata
        results.update(
            daily_load_calls=daily_calls,
            reconciliation_calls=meta["api_calls"].value,
            reconciliation_429s=meta["api_429s"].value,
            reconciliation_seconds=round(seconds, 2),
            values_compared=meta["dagster/row_count"].value,
            values_matching=meta["match"].value,
        )
        results["reconciliation_share"] = round(results["reconciliation_calls"] / daily_calls, 4)
        print(f"  {days} days of {others} campaigns + {flows}x{steps} flow steps: daily loads "
              f"{daily_calls} calls; reconciling the month {results['reconciliation_calls']} "
              f"calls ({results['reconciliation_share']:.1%}), "
              f"{results['values_matching']} of {results['values_compared']} values match, "
              f"{results['reconciliation_429s']} x 429, {seconds:.1f} s", flush=True)  # fmt: skip
        results["optimizer_off"] = _optimizer_cost(Lake.at(lake), settings)
    return results


def _optimizer_cost(lake: Lake, settings) -> dict:
    """Median seconds of the report's queries and every view's full read, optimizer on and off."""
    conn = connect(lake, read_only=True)
    repeats = 2 if tiny() else 7
    out = {}
    try:
        for setting, label in (("", "on"), ("common_subplan", "off")):
            conn.execute(f"SET disabled_optimizers = '{setting}'")
            timings = {"report": [], "views": []}
            for _ in range(repeats):
                started = time.perf_counter()
                build_report(conn, "lake.moestats.campaign_daily_summary", "WS_PROOF", "TOTAL",
                             "VIEW_THROUGH", "lake.moestats.campaign_monthly_summary",
                             flow_summary="lake.moestats.flow_daily_summary",
                             flow_campaigns="lake.moestats.flow_campaigns")  # fmt: skip
                timings["report"].append(time.perf_counter() - started)
                started = time.perf_counter()
                for name in VIEWS:
                    conn.execute(f"FROM moestats.{name}").fetchall()
                timings["views"].append(time.perf_counter() - started)
            out[label] = {k: round(statistics.median(v), 4) for k, v in timings.items()}
    finally:
        conn.close()
    for part in ("report", "views"):
        ratio = out["off"][part] / out["on"][part] if out["on"][part] else 0
        out[f"{part}_off_vs_on"] = round(ratio, 3)
        print(f"  optimizer common_subplan off: {part} {out['off'][part]:.3f} s vs on "
              f"{out['on'][part]:.3f} s ({ratio:.2f}x)", flush=True)  # fmt: skip
    return out
