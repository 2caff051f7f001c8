"""A run whose worker is killed never blocks its workspace: through the real daemon, a range
run's worker is SIGKILLed mid-way; run monitoring (our health-checked launcher) fails it with a
message naming the run, workspace, days and what was published; run_retries finishes the range
with every day once; and the workspace's next run is not blocked."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.instance.ref import InstanceRef

from moestats_dagster.lakehouse.warehouse import connection, read_slice
from moestats_dagster.model.schemas import CAMPAIGN_STATS_RAW, NORMALIZED_TABLES
from moestats_dagster.operations.launch import submit_backfill
from moestats_dagster.orchestration.lib.worker import WORKER_TAG
from moestats_dagster.sandbox.app import SandboxWorkspace
from moestats_dagster.sandbox.generator import campaigns_on
from moestats_dagster_tests.conftest import ALPHA_KEY, PATIENCE
from moestats_dagster_tests.helpers import build

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DAYS = [dt.date(2024, 12, 2) + dt.timedelta(days=n) for n in range(4)]
STATS = [AssetKey(["moestats", t.name]) for t in (CAMPAIGN_STATS_RAW, *NORMALIZED_TABLES)]


def _wait(what: str, done, instance, seconds: float = PATIENCE * 4):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = done()
        if value:
            return value
        time.sleep(1)
    runs = [(r.run_id[:8], r.status.value, r.tags.get(WORKER_TAG)) for r in instance.get_runs()]
    pytest.fail(f"{what} did not happen; runs: {runs}")


def test_a_killed_range_run_is_failed_retried_and_blocks_nothing(
    tmp_path, make_sandbox, write_workspaces, monkeypatch, limiter_dir
):
    home = tmp_path / "dagster_home"
    home.mkdir()
    config = (
        (ROOT / "dagster.yaml")
        .read_text()
        .replace("poll_interval_seconds: 30", "poll_interval_seconds: 2")
    )
    (home / "dagster.yaml").write_text(config)
    # every call slow: the range run is still going when it is killed
    server = make_sandbox(workspaces=[SandboxWorkspace("WS_ALPHA", ALPHA_KEY)], latency_seconds=0.4)
    path = write_workspaces(server, {"id": "WS_ALPHA", "api_key": ALPHA_KEY,
                                     "attribution_types": ["CLICK_THROUGH"],
                                     "metric_types": ["TOTAL"]}, start_date="2024-12-01")  # fmt: skip
    database = str(tmp_path / "lake")
    env = {**os.environ, "DAGSTER_HOME": str(home), "MOESTATS_WORKSPACES_FILE": str(path),
           "MOESTATS_LAKE_PATH": database}  # fmt: skip
    for key in ("DAGSTER_HOME", "MOESTATS_WORKSPACES_FILE", "MOESTATS_LAKE_PATH"):
        monkeypatch.setenv(key, env[key])
    instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
    defs = build(path, database, limiter_dir)
    submit_backfill(instance, defs, STATS, [f"{d}|WS_ALPHA" for d in DAYS])

    def start_daemon() -> subprocess.Popen:  # in a session of its own: a group to kill
        return subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip

    daemon = start_daemon()
    try:
        raw = AssetKey(["moestats", "campaign_stats_raw"])

        def running_with_a_day_published():
            runs = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED]))
            if runs and WORKER_TAG in runs[0].tags and instance.get_materialized_partitions(raw):
                return runs[0]
            return None

        run = _wait("a range run publishing its first day", running_with_a_day_published, instance)
        pid = int(run.tags[WORKER_TAG].split()[1])
        # The machine's way: the whole process group at once, the worker, the code server that
        # launched it and the daemon, so nothing of Dagster's is left to notice.
        group = os.getpgid(daemon.pid)
        assert os.getpgid(pid) == group
        os.killpg(group, signal.SIGKILL)
        daemon.wait(timeout=PATIENCE)
        _wait("the worker gone", lambda: not psutil.pid_exists(pid), instance)
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED
        daemon = start_daemon()  # the next daemon (make dev, the next moestats backfill)

        failed = _wait("the dead run failed by run monitoring",
                       lambda: (r := instance.get_run_by_id(run.run_id)).is_finished and r, instance)  # fmt: skip
        assert failed.status == DagsterRunStatus.FAILURE
        said = " / ".join(e.message or "" for e in instance.all_logs(run.run_id) if e.dagster_event
                          and e.dagster_event.event_type_value == "PIPELINE_FAILURE")  # fmt: skip
        assert "died" in said and "WS_ALPHA" in said and f"{DAYS[0]}|WS_ALPHA" in said, said
        assert f"pid {pid}" in said and "Published before it died" in said, said

        def range_done():
            runs = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.SUCCESS]))
            return len(instance.get_materialized_partitions(raw)) == len(DAYS) and runs

        _wait("the retry finishing the range", range_done, instance)

        # the workspace's slot is free: its next run starts and finishes
        submit_backfill(instance, defs, STATS, ["2024-12-06|WS_ALPHA"])
        _wait("the next run of the workspace",
              lambda: "2024-12-06|WS_ALPHA" in {str(k) for k in
                                                instance.get_materialized_partitions(raw)},
              instance)  # fmt: skip
    finally:
        os.killpg(os.getpgid(daemon.pid), signal.SIGTERM)
        daemon.wait(timeout=PATIENCE)
    ws = SandboxWorkspace("WS_ALPHA", ALPHA_KEY)
    with connection(database) as conn:
        for day in DAYS:  # every day once: exactly its campaigns, no row twice
            stored = read_slice(conn, NORMALIZED_TABLES[0], workspace_id="WS_ALPHA",
                                stat_date=day)  # fmt: skip
            want = {c.campaign_id for c in campaigns_on("WS_ALPHA", day, ws.universe,
                                                         ws.campaigns_per_day)}  # fmt: skip
            assert set(stored.campaign_id) == want
            assert not stored.duplicated(NORMALIZED_TABLES[0].keys).any()
