"""Peak memory of one partition run: a 5,000-campaign day with all 10 metric x attribution types.

A sandbox in its own process serves the day (so its generator's memory is not counted); a second
process runs the day x workspace step through Dagster (`materialize`: fetch, normalize, check,
publish to a DuckLake lake) and reports its peak RSS (`ru_maxrss`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import tiny

CAMPAIGNS = 5_000
DAY = dt.date(2024, 12, 3)

SANDBOX = """
import sys
from moestats_dagster.sandbox import SandboxApp, SandboxServer, SandboxWorkspace
ws = SandboxWorkspace("WS_BIG", "big-key", rate_limit=100_000, universe=int(sys.argv[1]),
                      campaigns_per_day=int(sys.argv[1]))
server = SandboxServer(SandboxApp([ws])).start()
print(server.url, flush=True)
sys.stdin.readline()
"""

RUN = """
import datetime as dt, json, resource, sys, time
from dagster import DagsterInstance, materialize
from moestats_dagster.definitions import defs
from moestats_dagster.orchestration.lib.partitions import partition_key
assets = [a for a in defs.assets if any(k.path[-1] == "campaign_stats_raw" for k in a.keys)]
started = time.perf_counter()
result = materialize(assets, partition_key=partition_key(dt.date.fromisoformat(sys.argv[1]), "WS_BIG"),
                     resources=defs.resources, instance=DagsterInstance.ephemeral())
rows = {m.asset_key.path[-1]: m.materialization.metadata["dagster/row_count"].value
        for m in result.get_asset_materialization_events()}
print(json.dumps({"success": result.success, "seconds": round(time.perf_counter() - started, 1),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                  "rows": rows}), flush=True)
"""


def run(campaigns: int = CAMPAIGNS) -> dict:
    campaigns = _size(campaigns)
    sandbox = subprocess.Popen([sys.executable, "-c", SANDBOX, str(campaigns)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        url = sandbox.stdout.readline().strip()
        with tempfile.TemporaryDirectory() as tmp:
            workspaces = Path(tmp) / "workspaces.yaml"
            workspaces.write_text(
                'start_date: "2024-01-01"\nworkspaces:\n'
                f'  - id: WS_BIG\n    base_url: "{url}"\n    api_key_env: KEY_BIG\n'
                "    rate_limit_per_minute: 100000\n"
            )
            env = {**os.environ, "MOESTATS_WORKSPACES_FILE": str(workspaces),
                   "MOESTATS_LAKE_PATH": str(Path(tmp) / "lake"), "KEY_BIG": "big-key",
                   "MOESTATS_STATE_DIR": str(Path(tmp) / "state"), "DAGSTER_HOME": tmp}  # fmt: skip
            env.pop("MOESTATS_POSTGRES_URL", None)
            started = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", RUN, DAY.isoformat()], env=env,
                                 capture_output=True, text=True, timeout=1800)  # fmt: skip
            if out.returncode:
                raise RuntimeError(out.stderr[-3000:])
            result = json.loads(out.stdout.strip().splitlines()[-1])
            result["wall_seconds"] = round(time.perf_counter() - started, 1)
    finally:
        sandbox.stdin.write("\n")
        sandbox.stdin.flush()
        sandbox.wait(timeout=30)
    result["campaigns"] = campaigns
    print(f"  one partition, {campaigns:,} campaigns x 10 metric x attribution types: peak RSS "
          f"{result['peak_rss_mb']:,} MB, {result['seconds']} s in the step "
          f"(raw rows {result['rows'].get('campaign_stats_raw')})", flush=True)  # fmt: skip
    return result


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else CAMPAIGNS), indent=1))


def _size(campaigns: int) -> int:
    return 50 if tiny() else campaigns
