"""The README's "Add to your Dagster project" lines, as written, in a brand-new `create-dagster`
project at the newest Dagster 1.13.x: the package installed from a checkout beside the project
(not PYTHONPATH), the project's Dagster left at the version it chose."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MARK = "<!-- component -->"
ANYWHERE = shutil.ignore_patterns("__pycache__", ".ruff_cache", "*.egg-info")
AT_THE_ROOT = {
    ".git",
    ".venv",
    "data",
    "build",
    "dist",
    "history",
    "storage",
    "logs",
    "schedules",
    ".logs_queue",
    ".nux",
    ".telemetry",
}  # the demo's instance, etc.


def COPIED(folder: str, names: list[str]) -> set[str]:  # noqa: N802 (shutil.copytree's ignore)
    """What the checkout copy leaves out: the instance's folders only at the top (a package
    folder may share a name with one), caches everywhere."""
    skipped = set(ANYWHERE(folder, names))
    return skipped | (AT_THE_ROOT & set(names) if Path(folder) == ROOT else set())


def readme_lines() -> str:
    text = (ROOT / "README.md").read_text()
    [block] = re.findall(re.escape(MARK) + r"\s*```bash\n(.*?)```", text, flags=re.S)
    return block


def run(args, cwd: Path, env: dict, timeout: float = 900) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"{args} exited {done.returncode}:\n{done.stdout[-2000:]}\n" + (done.stderr[-4000:])
    )
    return done.stdout


def dagster_version(project: Path, env: dict) -> str:
    return run([str(project / ".venv" / "bin" / "python"), "-c",
                "import dagster; print(dagster.__version__)"], project, env).strip()  # fmt: skip


def newest_project_version() -> str:
    """The newest 1.13.x for which a create-dagster project resolves: create-dagster pins that
    dagster, and its dev group needs dagster-dg-cli at the same version (a registry may carry
    dagster releases that dagster-dg-cli has not reached yet)."""
    out = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "dagster-dg-cli"],
                         capture_output=True, text=True, timeout=120).stdout  # fmt: skip
    found = re.search(r"Available versions: (.*)", out)
    if not found:
        pytest.skip(f"the package registry did not answer: {out[-300:]}")
    versions = [v.strip() for v in found.group(1).split(",")]
    return next(v for v in versions if re.fullmatch(r"1\.13\.\d+", v))


def test_the_readme_lines_add_the_component_to_a_fresh_project_at_the_newest_dagster(tmp_path):
    uv = shutil.which("uv", path=str(BIN))
    if uv is None:
        pytest.skip("uv is in the dev extra: run the tests with make test")
    version = newest_project_version()
    # "this repository cloned beside it"
    shutil.copytree(ROOT, tmp_path / "moestats_dagster", ignore=COPIED)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MOESTATS_", "DAGSTER_", "VIRTUAL_ENV", "PYTHON"))}  # fmt: skip
    env.update(DAGSTER_DG_UPDATE_CHECK_ENABLED="0", UV_PYTHON=sys.executable)
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"  # uv itself
    run([uv, "tool", "run", "--from", f"create-dagster=={version}", "create-dagster", "project",
         "team_project", "--uv-sync"], tmp_path, env)  # fmt: skip
    project = tmp_path / "team_project"
    before = dagster_version(project, env)
    assert before == version
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    active = {**env, "VIRTUAL_ENV": str(project / ".venv"), "DAGSTER_HOME": str(home),
              "PATH": f"{project / '.venv' / 'bin'}:{env['PATH']}"}  # fmt: skip
    out = run(["bash", "-euo", "pipefail", "-c", readme_lines()], project, active)
    assert "marketing" not in out and "moestats/campaign_stats_raw" in out  # dg list defs
    assert dagster_version(project, env) == before  # the team's Dagster, not ours
    from moestats_dagster.lakehouse.warehouse import connection

    with connection(str(project / "data" / "lake")) as conn:
        [(rows,)] = conn.execute(
            "SELECT count(*) FROM moestats.campaign_stats_raw WHERE workspace_id = 'WS_ALPHA'"
        ).fetchall()
    assert rows > 0
