"""What flow-linked campaigns cost a day: calls on the first night and on a warm one.

A workspace of 30 flows x 5 steps (plus the retired version's step of every other flow) and 200
other campaigns a day, all 10 metric x attribution combinations, through the stats step as a run
makes it (materialize, in process). The sandbox's window is scaled to 100 calls per second, so
the figures are calls, not minutes: at MoEngage's 100/min, minutes = calls / 100.

python -m benchmarks.run --only flows           (MOESTATS_BENCH_FLOWS=30x5, MOESTATS_BENCH_OTHERS=200)
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

from dagster import DagsterInstance, materialize

from benchmarks import tiny
from moestats_dagster.config import load_settings
from moestats_dagster.orchestration.build import build_definitions
from moestats_dagster.orchestration.lib.partitions import partition_key
from moestats_dagster.orchestration.lib.resources import MoEngageResource
from moestats_dagster.sandbox import SandboxApp, SandboxServer, SandboxWorkspace


def _sizes() -> tuple[int, int, int]:
    """(flows, steps per flow, other campaigns a day)."""
    flows = os.environ.get("MOESTATS_BENCH_FLOWS", "2x2" if tiny() else "30x5")
    count, steps = (int(n) for n in flows.split("x"))
    return count, steps, int(os.environ.get("MOESTATS_BENCH_OTHERS", "10" if tiny() else "200"))


DAY = dt.date(2024, 11, 4)
WINDOW = 1.0


def _night(defs, day: dt.date, instance) -> dict:
    stats = [a for a in defs.assets if any(k.path[-1] == "campaign_stats_raw" for k in a.keys)]
    started = time.process_time()
    result = materialize(stats, partition_key=partition_key(day, "WS_FLOWS"),
                         resources=defs.resources, instance=instance)  # fmt: skip
    cpu = time.process_time() - started
    [raw] = [m for m in result.asset_materializations_for_node("campaign_stats")
             if m.asset_key.path[-1] == "campaign_stats_raw"]  # fmt: skip
    meta = {k: v.value for k, v in raw.metadata.items()}
    return {
        "campaigns": meta["campaigns"],
        "stats_calls": meta["api_calls"],
        "flow_stats_calls": meta.get("flow_stats_calls", 0),
        "flow_discovery_calls": meta.get("flow_discovery_calls", 0),
        "flow_campaigns_asked": meta.get("flow_campaigns_asked", 0),
        "flow_campaigns_answered": meta.get("flow_campaigns_answered", 0),
        "http_429": meta["api_429s"],
        "cpu_s": round(cpu, 2),
    }


def run() -> dict:
    FLOWS, STEPS, OTHERS = _sizes()  # noqa: N806
    workspace = SandboxWorkspace("WS_FLOWS", "key-flows", v5_key="v5-flows", flows=FLOWS,
                                 flow_steps=STEPS, campaigns_per_day=OTHERS)  # fmt: skip
    app = SandboxApp([workspace], window_seconds=WINDOW)
    results: dict = {"flows": FLOWS, "steps_per_flow": STEPS, "other_campaigns": OTHERS}
    with SandboxServer(app) as server, tempfile.TemporaryDirectory() as tmp:
        os.environ.update({"BENCH_KEY": "key-flows", "BENCH_V5_KEY": "v5-flows"})
        for mode in ("off", "auto"):
            path = Path(tmp, f"{mode}.yaml")
            path.write_text(
                f'start_date: "2024-01-01"\nworkspaces:\n  - id: WS_FLOWS\n'
                f"    base_url: {server.url}\n    api_key_env: BENCH_KEY\n"
                f"    campaigns_api_key_env: BENCH_V5_KEY\n    flows: {mode}\n"
            )
            resource = MoEngageResource.for_settings(load_settings(path), window_seconds=WINDOW,
                                        limiter_dir=str(Path(tmp, f"rl-{mode}")))  # fmt: skip
            defs = build_definitions(load_settings(path), database=str(Path(tmp, f"lake-{mode}")),
                                     moengage=resource)  # fmt: skip
            instance = DagsterInstance.ephemeral()
            before = len(app.calls)
            nights = [_night(defs, DAY + dt.timedelta(days=n), instance) for n in range(2)]
            paths = Counter(c.path.split("/flows/")[0] + ("/flows" if "/flows/" in c.path else "")
                            for c in app.calls[before:])  # fmt: skip
            results[f"flows_{mode}"] = {"first_night": nights[0], "warm_night": nights[1],
                                        "calls_by_path": dict(paths)}  # fmt: skip
    on, off = results["flows_auto"], results["flows_off"]
    for night in ("first_night", "warm_night"):
        extra = (
            on[night]["stats_calls"] + on[night]["flow_discovery_calls"] - off[night]["stats_calls"]
        )
        results[f"extra_calls_{night}"] = extra
        print(f"  {night}: {on[night]['campaigns']} campaigns ({on[night]['flow_campaigns_answered']}"
              f" of {on[night]['flow_campaigns_asked']} flow campaigns asked had stats) in "
              f"{on[night]['stats_calls']} Stats + {on[night]['flow_discovery_calls']} Flows API "
              f"calls; without flows {off[night]['campaigns']} campaigns in "
              f"{off[night]['stats_calls']} calls: +{extra} calls "
              f"(+{extra / off[night]['stats_calls']:.0%}), {on[night]['http_429']} x 429; "
              f"CPU {on[night]['cpu_s']} s vs {off[night]['cpu_s']} s", flush=True)  # fmt: skip
    return results
