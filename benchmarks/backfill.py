"""Backfill overhead: 30 days x 2 workspaces through the daemon, against the API floor.

The real path: a DAGSTER_HOME with the project's dagster.yaml (queued run coordinator, one run
per workspace at a time), a backfill record as the UI's "Launch backfill" creates it, the
daemon turning it into one run per partition, each run a process of its own.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from dagster import AssetKey, DagsterInstance, RunsFilter
from dagster._core.instance.ref import InstanceRef

from benchmarks import tiny
from moestats_dagster.config import load_settings
from moestats_dagster.model.schemas import CAMPAIGN_STATS_RAW, NORMALIZED_TABLES
from moestats_dagster.operations.demo import LOCATION
from moestats_dagster.operations.launch import Services, start_services, submit_backfill
from moestats_dagster.orchestration.build import build_definitions
from moestats_dagster.sandbox import SandboxApp, SandboxServer, SandboxWorkspace

ROOT = Path(__file__).resolve().parents[1]
WORKSPACES = {"WS_ALPHA": "sandbox-key-alpha", "WS_BETA": "sandbox-key-beta"}
START = dt.date(2024, 11, 1)


STATS = [AssetKey(["moestats", t.name]) for t in (CAMPAIGN_STATS_RAW, *NORMALIZED_TABLES)]


def daemon_project(
    tmp: Path,
    url: str,
    workspaces: dict[str, str],
    limit: int,
    window: float,
    extra: list[str] | None = None,
    start: dt.date = dt.date(2024, 1, 1),
    postgres_url: str = "",
) -> tuple[DagsterInstance, object, dict[str, str]]:
    """A DAGSTER_HOME with this dagster.yaml, a workspaces file for `workspaces` (id -> key) at
    `url`, and the environment a daemon needs; this process's environment set to match. With
    `postgres_url`: the production profile (deploy/dagster.postgres.yaml: the instance, the lake's
    catalog and the rate windows in that database)."""
    home = tmp / "home"
    home.mkdir()
    profile = ROOT / "deploy" / "dagster.postgres.yaml" if postgres_url else ROOT / "dagster.yaml"
    shutil.copy(profile, home / "dagster.yaml")
    lines = [f'start_date: "{start}"', "workspaces:"]
    for ws in workspaces:
        lines += [f"  - id: {ws}", f"    base_url: {url}", f"    api_key_env: KEY_{ws}",
                  f"    rate_limit_per_minute: {limit}", *(extra or [])]  # fmt: skip
    workspaces_file = tmp / "workspaces.yaml"
    workspaces_file.write_text("\n".join(lines) + "\n")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "MOESTATS_WORKSPACES_FILE": str(workspaces_file),
        "MOESTATS_LAKE_PATH": str(tmp / "lake"),
        "MOESTATS_STATE_DIR": str(tmp / "state"),
        "MOESTATS_RATE_WINDOW_SECONDS": str(window),
        **({"MOESTATS_POSTGRES_URL": postgres_url} if postgres_url else {}),
        **{f"KEY_{ws}": key for ws, key in workspaces.items()},
    }
    if not postgres_url:
        os.environ.pop("MOESTATS_POSTGRES_URL", None)
        env.pop("MOESTATS_POSTGRES_URL", None)
    os.environ.update({k: v for k, v in env.items()
                       if k.startswith(("MOESTATS", "KEY_", "DAGSTER_HOME"))})  # fmt: skip
    instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
    defs = build_definitions(load_settings(workspaces_file), database=env["MOESTATS_LAKE_PATH"])
    return instance, defs, env


def start_daemon(env: dict[str, str]) -> Services:
    """The project's code server and a daemon loading it, as `dagster dev`, `moestats backfill`
    and the demo start them."""
    return start_services(
        "moestats_dagster.definitions", LOCATION, cwd=ROOT, env=env, log=subprocess.DEVNULL
    )


def run(days: int = 30, limit: int = 100, window: float = 60.0) -> dict:
    if tiny():
        days, window = 2, 6.0
    app = SandboxApp(
        [SandboxWorkspace(ws, key, rate_limit=limit) for ws, key in WORKSPACES.items()],
        window_seconds=window,
    )
    with SandboxServer(app) as server, tempfile.TemporaryDirectory() as tmp:
        instance, defs, env = daemon_project(
            Path(tmp), server.url, WORKSPACES, limit, window, extra=["    metric_types: [TOTAL]"]
        )
        keys = [f"{START + dt.timedelta(days=n)}|{ws}" for n in range(days) for ws in WORKSPACES]
        submit_backfill(instance, defs, STATS, keys, title="benchmark")
        started = time.time()
        daemon = start_daemon(env)
        try:
            while True:
                records = instance.get_run_records(RunsFilter())
                done = len(instance.get_materialized_partitions(STATS[0]))
                if done == len(keys) and all(r.dagster_run.is_finished for r in records):
                    break
                if time.time() - started > 1200:
                    raise TimeoutError("backfill did not finish in 20 minutes")
                time.sleep(2)
        finally:
            daemon.stop()
        wall = max(r.end_time for r in records) - started
        api = {}
        raw_key = AssetKey(["moestats", "campaign_stats_raw"])
        for rec in instance.fetch_materializations(raw_key, limit=1000).records:
            api[rec.run_id] = rec.asset_materialization.metadata["api_seconds"].value
        durations = [r.end_time - r.start_time for r in records]
        gaps = []  # from one run of a workspace ending to its next run starting: queue + launch
        for ws in WORKSPACES:
            spans = sorted((r.start_time, r.end_time) for r in records
                           if r.dagster_run.tags.get("moestats/workspace") == ws)  # fmt: skip
            gaps += [b[0] - a[1] for a, b in zip(spans, spans[1:], strict=False)]
        overhead = [r.end_time - r.start_time - api.get(r.dagster_run.run_id, 0) for r in records]
        calls = {ws: sum(1 for c in app.calls if c.workspace_id == ws and c.status == 200)
                 for ws in WORKSPACES}  # fmt: skip
        throttled = sum(1 for c in app.calls if c.status == 429)
    floor = max(calls.values()) / limit * window  # calls / limit
    window_floor = (math.ceil(max(calls.values()) / limit) - 1) * window  # sliding-window bound
    result = {
        "partitions": len(keys),
        "succeeded": sum(r.dagster_run.status.value == "SUCCESS" for r in records),
        "calls_per_workspace": calls,
        "http_429": throttled,
        "limit": f"{limit} per {window:.0f}s",
        "wall_s": round(wall, 1),
        "api_floor_s": round(floor, 1),
        "x_api_floor": round(wall / floor, 2),
        "sliding_window_floor_s": round(window_floor, 1),
        "mean_run_s": round(sum(durations) / len(durations), 2),
        "per_partition_overhead_s": round(sum(overhead) / len(overhead), 2),
        "mean_gap_between_runs_s": round(sum(gaps) / len(gaps), 2) if gaps else None,
    }
    print(f"  backfill: {result['succeeded']}/{len(keys)} partitions in {result['wall_s']}s, "
          f"API floor {result['api_floor_s']}s ({result['x_api_floor']}x), "
          f"{result['per_partition_overhead_s']}s Dagster overhead in each run + "
          f"{result['mean_gap_between_runs_s']}s queue/launch gap between a workspace's runs, "
          f"{throttled} x 429", flush=True)  # fmt: skip
    return result
