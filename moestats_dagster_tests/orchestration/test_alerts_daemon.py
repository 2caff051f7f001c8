"""Alerts through the real daemon and its sensors, to a fake Slack over HTTP: a bad night of 20
failed runs is a bounded number of messages that name all 20 (before: one message per run)."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.instance.ref import InstanceRef

from moestats_dagster.operations.launch import submit_backfill
from moestats_dagster.sandbox.app import SandboxWorkspace
from moestats_dagster_tests.fake_slack import FakeSlack
from moestats_dagster_tests.helpers import build, stats_assets

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TOKEN = "xoxb-daemon-test"
WORKSPACES = [f"WS_{n}" for n in range(5)]
DAYS = [dt.date(2024, 11, 8) + dt.timedelta(days=n) for n in range(4)]


def test_twenty_runs_failing_with_403_are_a_few_messages_naming_all_twenty(
    tmp_path, make_sandbox, write_workspaces, limiter_dir
):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    server = make_sandbox(workspaces=[SandboxWorkspace(ws, "k", stats_access=False)
                                      for ws in WORKSPACES])  # fmt: skip
    path = write_workspaces(server, *({"id": ws, "api_key": "k"} for ws in WORKSPACES))
    with FakeSlack(TOKEN) as slack:
        path.write_text(path.read_text() + "alerts:\n  slack:\n    channel: '#data'\n"
                        f"    token_env: TEST_SLACK_TOKEN\n    base_url: '{slack.base_url}'\n")  # fmt: skip
        env = {**os.environ, "DAGSTER_HOME": str(home), "MOESTATS_WORKSPACES_FILE": str(path),
               "MOESTATS_LAKE_PATH": str(tmp_path / "lake"), "TEST_SLACK_TOKEN": TOKEN,
               "MOESTATS_STATE_DIR": str(tmp_path / "state"),
               "MOESTATS_BACKFILL_DAYS_PER_RUN": "1"}  # a run per day: 20 runs  # fmt: skip
        os.environ["DAGSTER_HOME"] = str(home)
        instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
        defs = build(path, str(tmp_path / "lake"), limiter_dir)
        keys = [f"{d.isoformat()}|{ws}" for d in DAYS for ws in WORKSPACES]
        os.environ["MOESTATS_BACKFILL_DAYS_PER_RUN"] = "1"
        try:
            submit_backfill(instance, defs, [k for a in stats_assets(defs) for k in a.keys], keys)
        finally:
            os.environ.pop("MOESTATS_BACKFILL_DAYS_PER_RUN", None)
        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        named = 0
        try:
            deadline = time.monotonic() + 600  # a bound against a hang, not a speed
            while time.monotonic() < deadline:
                runs = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.FAILURE]))
                named = sum(int(m) for msg in slack.messages
                            for m in re.findall(r"(\d+) runs? failed", msg["text"]))  # fmt: skip
                if len(runs) >= 20 and named >= 20:
                    break
                time.sleep(2)
        finally:
            daemon.terminate()
            daemon.wait(timeout=60)
    failed_runs = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.FAILURE]))
    assert len(failed_runs) == 20, [(r.job_name, r.tags) for r in failed_runs]
    assert named == 20, [m["text"] for m in slack.messages]  # every run named, none twice
    assert 1 <= len(slack.messages) <= 6  # grouped per tick, not one per run
    text = "\n".join(m["text"] for m in slack.messages)
    assert all(ws in text for ws in WORKSPACES) and "403" in text
