"""A dagster.yaml written for the previous release still loads, and says what to change."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
from dagster import DagsterInstance
instance = DagsterInstance.get()
print(type(instance.run_coordinator).__name__, type(instance.event_log_storage).__name__)
"""


def _instance_output(home: Path, yaml_text: str) -> subprocess.CompletedProcess:
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml_text)
    # A fresh process: the old modules warn when they are first imported, as a daemon's would.
    env = {"DAGSTER_HOME": str(home), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)  # fmt: skip


def test_old_plugin_paths_still_load_and_warn(tmp_path):
    old = (ROOT / "dagster.yaml").read_text().replace(".orchestration.instance.", ".orchestration.")
    assert "moestats_dagster.orchestration.run_coordinator" in old
    done = _instance_output(tmp_path / "home", old)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "WorkspaceQueuedRunCoordinator",
        "KeptEngineSqliteEventLogStorage",
    ]
    for moved in ("event_log", "run_coordinator"):
        assert (
            f"moestats_dagster.orchestration.{moved} moved to "
            f"moestats_dagster.orchestration.instance.{moved}"
        ) in done.stderr
    assert "FutureWarning" in done.stderr


def test_the_shipped_paths_load_without_a_warning(tmp_path):
    done = _instance_output(tmp_path / "home", (ROOT / "dagster.yaml").read_text())
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "WorkspaceQueuedRunCoordinator",
        "KeptEngineSqliteEventLogStorage",
    ]
    assert "moved to" not in done.stderr
