"""Schedules, and a real backfill through the daemon on an instance configured by dagster.yaml."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    DagsterRunStatus,
    RunsFilter,
)
from dagster._core.instance.ref import InstanceRef
from dagster._core.run_coordinator import QueuedRunCoordinator

from moestats_dagster.lakehouse.warehouse import connection, table_name
from moestats_dagster.model.schemas import CAMPAIGN_STATS_RAW, NORMALIZED_TABLES, TABLES
from moestats_dagster.operations.launch import RunWatcher, submit_backfill
from moestats_dagster.orchestration.lib.run_tags import WORKSPACE_TAG, partition_count, where
from moestats_dagster.sandbox.app import SandboxWorkspace
from moestats_dagster.sandbox.generator import campaigns_on
from moestats_dagster_tests.conftest import ALPHA_KEY, PATIENCE, SMALL_DAY
from moestats_dagster_tests.helpers import build, run_partition

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BETA_KEY = "sandbox-key-beta"


DAYS = [dt.date(2024, 12, 3), dt.date(2024, 12, 4), dt.date(2024, 12, 5), dt.date(2024, 12, 6)]


@pytest.fixture
def daemon_setup(tmp_path, make_sandbox, write_workspaces, monkeypatch):
    """A DAGSTER_HOME holding the project's dagster.yaml, and a sandbox whose limit is scaled to
    8 calls per 2 s (100/min in miniature)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    server = make_sandbox(
        workspaces=[
            SandboxWorkspace("WS_ALPHA", ALPHA_KEY, rate_limit=8),
            SandboxWorkspace("WS_BETA", BETA_KEY, rate_limit=8),
        ],
        window_seconds=2.0,
    )
    small = {"attribution_types": ["VIEW_THROUGH", "CLICK_THROUGH"], "metric_types": ["TOTAL"]}
    path = write_workspaces(
        server,
        {"id": "WS_ALPHA", "api_key": ALPHA_KEY, "rate_limit_per_minute": 8, **small},
        {"id": "WS_BETA", "api_key": BETA_KEY, "rate_limit_per_minute": 8, **small},
    )
    database = str(tmp_path / "lake")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "MOESTATS_WORKSPACES_FILE": str(path),
        "MOESTATS_LAKE_PATH": database,
        "MOESTATS_RATE_WINDOW_SECONDS": "2",
    }
    for key in ("DAGSTER_HOME", "MOESTATS_WORKSPACES_FILE", "MOESTATS_LAKE_PATH",
                "MOESTATS_RATE_WINDOW_SECONDS"):  # fmt: skip
        monkeypatch.setenv(key, env[key])
    return home, server, path, database, env


def timeline(records) -> str:
    """Every run, in order of creation: when it was created, started and ended (seconds from the
    first), what launched it and what it materialized, for a failure message."""
    t0 = min(r.create_timestamp.timestamp() for r in records)
    rows = []
    for r in sorted(records, key=lambda r: r.create_timestamp):
        run = r.dagster_run
        at = [round(t - t0, 1) if t else None for t in (r.start_time, r.end_time)]
        by = run.tags.get("dagster/sensor_name") or run.tags.get("dagster/backfill", "?")
        keys = sorted(k.path[-1] for k in run.asset_selection or [])
        rows.append(f"{round(r.create_timestamp.timestamp() - t0, 1)} {at} {run.status.value} {by} "
                    f"{run.tags.get('dagster/partition', run.tags.get(WORKSPACE_TAG))} {keys}")  # fmt: skip
    return "\n".join(rows)


STATS = [AssetKey(["moestats", t.name]) for t in (CAMPAIGN_STATS_RAW, *NORMALIZED_TABLES)]


def _backfill(instance, defs, partition_keys: list[str]) -> str:
    """A backfill as the UI's "Launch backfill" writes it (the demo's own function)."""
    return submit_backfill(instance, defs, STATS, partition_keys)


def test_backfill_through_the_daemon_is_complete_rate_safe_and_serialized_per_workspace(
    daemon_setup, limiter_dir
):
    """... and then, by declarative automation alone, every stats campaign of those days has
    its name: the automation sensor (on by default) refreshes metadata, summary and report."""
    home, server, path, database, env = daemon_setup
    instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
    assert isinstance(instance.run_coordinator, QueuedRunCoordinator)  # from dagster.yaml
    defs = build(path, database, limiter_dir)
    keys = [f"{d.isoformat()}|{ws}" for d in DAYS for ws in ("WS_ALPHA", "WS_BETA")]
    _backfill(instance, defs, keys)
    # the same partition asked for twice at once: one run must wait for the other
    _backfill(instance, defs, ["2024-12-05|WS_ALPHA"])
    _backfill(instance, defs, ["2024-12-05|WS_ALPHA"])
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    report = AssetKey(["moestats", "campaign_report"])
    try:
        deadline = time.monotonic() + 480
        while time.monotonic() < deadline:
            runs = instance.get_runs(RunsFilter())
            automated = [r for r in runs if r.tags.get("dagster/from_automation_condition")]
            stats_runs = [r for r in runs if r not in automated]
            refreshed = instance.get_materialized_partitions(report)
            if (
                len(stats_runs) == 4  # a run of several days per workspace, plus the two repeats
                and {"WS_ALPHA", "WS_BETA"} <= refreshed
                and all(r.is_finished for r in runs)
            ):
                break
            time.sleep(2)
        else:
            pytest.fail(
                f"backfill + automation did not finish: {[(r.status, r.tags) for r in runs]}"
            )
    finally:
        daemon.terminate()
        daemon.wait(timeout=PATIENCE)

    records = instance.get_run_records(RunsFilter())
    assert [r.status for r in runs] == [DagsterRunStatus.SUCCESS] * len(runs), timeline(records)
    done = instance.get_materialized_partitions(AssetKey(["moestats", "campaign_stats_raw"]))
    assert set(keys) <= set(done)
    # the limiter kept every workspace under its window: the sandbox never had to say 429
    assert 429 not in server.app.statuses() and server.app.statuses()[200] > 40
    # The refresh came from the automation sensor after the stats, not once per stats run: one
    # run per workspace, or two when a tick fell between a stats run's raw materialization and
    # its tables' (campaigns first, then summary and report; seen once in ~15 runs, and in every
    # run with a 31 s pause planted there). Together they refreshed all six.
    refreshes = Counter(r.tags[WORKSPACE_TAG] for r in automated)
    assert set(refreshes) == {"WS_ALPHA", "WS_BETA"}, timeline(records)
    assert max(refreshes.values()) <= 2, timeline(records)
    for ws in refreshes:
        refreshed_keys = {k.path[-1] for r in automated if r.tags[WORKSPACE_TAG] == ws
                          for k in r.asset_selection or []}  # fmt: skip
        assert refreshed_keys == {
            "campaigns",
            "campaign_daily_summary",
            "campaign_report",
            "flows",
            "flow_campaigns",
            "flow_daily_summary",
        }
    assert all(r.tags["dagster/sensor_name"] == "moestats_automation" for r in automated)
    # runs of one workspace never overlapped (stats and metadata alike); different ones could
    assert sorted(
        r.dagster_run.tags[WORKSPACE_TAG] for r in records if r.dagster_run in stats_runs
    ) == ["WS_ALPHA"] * 3 + ["WS_BETA"]
    # the backfill's days of a workspace in one run (BACKFILL_DAYS_PER_RUN), each day its own
    # materialization
    ranged = [r for r in stats_runs if partition_count(r.tags) > 1]
    assert sorted(where(r) for r in ranged) == [
        f"{ws}, {DAYS[0]} to {DAYS[-1]}" for ws in ("WS_ALPHA", "WS_BETA")
    ], timeline(records)
    for ws in ("WS_ALPHA", "WS_BETA"):
        spans = sorted(
            (r.start_time, r.end_time) for r in records if r.dagster_run.tags[WORKSPACE_TAG] == ws
        )
        assert all(
            a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:], strict=False)
        )
    # every stats campaign of those days has its name, nobody ran the metadata job by hand
    with connection(database) as conn:
        unnamed, named = conn.execute(
            "SELECT count(*) FILTER (WHERE campaign_name IS NULL), count(*) "
            "FROM moestats.campaign_daily_summary WHERE stat_date BETWEEN ? AND ?",
            [DAYS[0], DAYS[-1]],
        ).fetchone()
    assert unnamed == 0 and named > 20
    # every row once
    with connection(database) as conn:
        raw = table_name(conn, TABLES["campaign_stats_raw"])
        counts = dict(
            conn.execute(
                f"SELECT workspace_id || stat_date, count(*) FROM {raw} GROUP BY ALL"
            ).fetchall()
        )
        dupes = conn.execute(
            f"SELECT count(*) - count(DISTINCT (workspace_id, stat_date, metric_type, "
            f"attribution_type, campaign_id)) FROM {raw}"
        ).fetchall()[0][0]
    assert dupes == 0
    for day in DAYS:
        for ws in ("WS_ALPHA", "WS_BETA"):
            assert counts.get(f"{ws}{day}", 0) == 2 * len(campaigns_on(ws, day))


def test_the_demo_reads_rate_window_waits_from_the_run_log(
    make_sandbox, write_workspaces, database, limiter_dir, monkeypatch
):
    """A run that idles for its rate window logs it; the demo's watcher turns that line into
    the progress bar's 'waiting N s for WS_ALPHA's 2 calls/6 s'."""
    monkeypatch.setenv("MOESTATS_RATE_WINDOW_SECONDS", "6")
    server = make_sandbox(window_seconds=6.0)
    small = {"attribution_types": ["VIEW_THROUGH", "CLICK_THROUGH", "IN_SESSION"],
             "metric_types": ["TOTAL"], "rate_limit_per_minute": 2}  # fmt: skip
    path = write_workspaces(server, {"id": "WS_ALPHA", "api_key": ALPHA_KEY, **small})
    defs = build(path, database, limiter_dir, window_seconds=6.0)
    instance = DagsterInstance.ephemeral()
    result = run_partition(defs, SMALL_DAY, "WS_ALPHA", instance)  # 3 calls: one wait
    watcher = RunWatcher(instance)
    watcher.poll([result.run_id])
    assert watcher.last_wait is not None
    ends, what = watcher.last_wait
    assert what == "WS_ALPHA's 2 calls/6 s"
    # while the wait lasts, the bar says how long is left
    watcher.last_wait = (time.time() + 38.4, what)
    assert watcher.waiting() == "waiting 38 s for WS_ALPHA's 2 calls/6 s"


def test_a_run_process_loads_the_definitions_without_the_plotting_stack():
    # Every run process imports the definitions; matplotlib (~1 s) and tabulate (~0.3 s) were
    # imported with them although only the report and the doctor use them.
    code = (
        "import sys, moestats_dagster.definitions; "
        "print(sorted(m for m in ('matplotlib', 'tabulate') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=PATIENCE)  # fmt: skip
    assert out.stdout.strip() == "[]"
