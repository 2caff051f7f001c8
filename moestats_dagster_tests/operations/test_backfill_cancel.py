"""Ctrl-C on `moestats backfill` cancels the backfill and leaves it CANCELED (before, the command
stopped its own daemon first and the backfill stayed CANCELING for ever)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance
from dagster._core.execution.backfill import BulkActionStatus

from moestats_dagster_tests.conftest import ALPHA_KEY, PATIENCE

ROOT = Path(__file__).resolve().parents[2]


def test_ctrl_c_leaves_the_backfill_canceled(make_sandbox, write_workspaces, tmp_path):
    if not (ROOT / ".venv" / "bin" / "moestats").exists():
        pytest.skip("runs .venv/bin/moestats: run the tests with make test")
    server = make_sandbox(latency_seconds=1.0)  # every call slow: the runs are still going
    path = write_workspaces(server, {"id": "WS_ALPHA", "api_key": ALPHA_KEY},
                            start_date="2024-11-01")  # fmt: skip
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MOESTATS_", "DAGSTER_"))},
        "DAGSTER_HOME": str(home), "MOESTATS_WORKSPACES_FILE": str(path),
        "MOESTATS_LAKE_PATH": str(tmp_path / "lake"), "MOESTATS_STATE_DIR": str(tmp_path / "s"),
        "TEST_KEY_WS_ALPHA": ALPHA_KEY,
    }  # fmt: skip
    proc = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "moestats"), "backfill", "--from", "2024-11-01", "--to",
         "2024-11-20"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    said = []
    deadline = time.monotonic() + PATIENCE * 3
    for line in proc.stdout:  # wait for the backfill to be launched (an event, not a guess)
        said.append(line)
        if " partitions of the job " in line:  # launched: the daemon makes its runs
            break
        assert time.monotonic() < deadline, "".join(said)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=PATIENCE * 3)
    text = "".join(said) + out
    assert proc.returncode == 130, text[-3000:]
    assert "Backfills cancelled." in text, text[-3000:]
    os.environ.setdefault("DAGSTER_HOME", str(home))
    with DagsterInstance.from_config(str(home)) as instance:
        [backfill] = instance.get_backfills()
    assert backfill.status == BulkActionStatus.CANCELED
