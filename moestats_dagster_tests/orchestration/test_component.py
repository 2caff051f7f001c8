"""The `MoEngageStats` component in a brand-new `dg` project, driven by the `dg` CLI as a team
would: scaffold, check, list, launch one partition against the sandbox over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from moestats_dagster.lakehouse.warehouse import connection
from moestats_dagster.sandbox.generator import campaigns_on
from moestats_dagster_tests.conftest import ALPHA_KEY, SMALL_DAY

BIN = Path(sys.executable).parent


def _run(args: list[str], cwd: Path, env: dict) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@pytest.fixture
def project(tmp_path, sandbox, monkeypatch):
    """A fresh project from `create-dagster`, the component scaffolded into it by `dg`."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_DG_UPDATE_CHECK_ENABLED": "0",  # no PyPI lookup from CI
        "TEST_KEY_WS_ALPHA": ALPHA_KEY,
        # as if the project were installed in this environment (uv sync / pip install -e .)
        "PYTHONPATH": str(tmp_path / "team_project" / "src"),
    }
    _run([str(BIN / "create-dagster"), "project", "team_project"], tmp_path, env)
    root = tmp_path / "team_project"
    _run([str(BIN / "dg"), "scaffold", "defs", "moestats_dagster.MoEngageStats", "moestats"],
         root, env)  # fmt: skip
    defs_yaml = root / "src" / "team_project" / "defs" / "moestats" / "defs.yaml"
    scaffolded = defs_yaml.read_text()
    assert (
        "type: moestats_dagster.MoEngageStats" in scaffolded and "base_url: sandbox" in scaffolded
    )
    # point it at the test's sandbox over HTTP, under the team's own prefix and group
    defs_yaml.write_text(
        textwrap.dedent(f"""\
            type: moestats_dagster.MoEngageStats
            attributes:
              start_date: "2024-12-01"
              timezone: Asia/Kolkata
              workspaces:
                - id: WS_ALPHA
                  base_url: "{sandbox.url}"
                  api_key_env: TEST_KEY_WS_ALPHA
                  flows: "off"  # the count below is the day's unnamed campaigns
                  attribution_types: [VIEW_THROUGH]
                  metric_types: [TOTAL]
              lake_path: warehouse/lake
              key_prefix: [marketing, moestats]
              group: marketing_moestats
            """)
    )
    # the team's own assets and resources beside it: same leaf names, no collision
    (root / "src" / "team_project" / "defs" / "team.py").write_text(
        textwrap.dedent("""\
            import dagster as dg

            @dg.asset(group_name="team")
            def campaigns():
                return 1

            @dg.definitions
            def team():
                return dg.Definitions(
                    assets=[campaigns],
                    resources={"warehouse": dg.ResourceDefinition.none_resource(),
                               "moengage": dg.ResourceDefinition.none_resource()},
                )
            """)
    )
    return root, env


def test_a_fresh_dg_project_checks_lists_and_launches_the_component(project, sandbox):
    root, env = project
    dg = str(BIN / "dg")
    assert "All definitions loaded successfully" in _run([dg, "check", "defs"], root, env)

    listed = json.loads(_run([dg, "list", "defs", "--json"], root, env))
    assets = {a["asset_key"]: a for a in listed["assets"]}
    ours = {k for k in assets if k.startswith("marketing/moestats/")}
    assert ours == {
        f"marketing/moestats/{name}"
        for name in ("campaign_stats_raw", "performance_stats", "conversion_goal_stats",
                     "delivery_funnel", "failure_breakdown", "campaigns",
                     "campaign_daily_summary", "campaign_report", "stats_coverage",
                     "campaign_monthly_stats", "lake_maintenance", "flows", "flow_campaigns",
                     "flow_daily_summary")
    }  # fmt: skip
    assert "campaigns" in assets  # the team's own, untouched
    assert {assets[k]["group_name"] for k in ours} == {"marketing_moestats"}
    checks = {c["key"] for c in listed["asset_checks"]}
    assert "marketing/moestats/performance_stats:headline_numbers_within_usual_range" in checks
    assert "marketing/moestats/campaign_stats_raw:raw_complete_against_total_campaigns" in checks
    assert {j["name"] for j in listed["jobs"]} >= {"marketing_moestats_daily",
                                                   "marketing_moestats_campaigns"}  # fmt: skip
    assert "marketing_moestats_automation" in {s["name"] for s in listed["sensors"]}

    key = f"{SMALL_DAY.isoformat()}|WS_ALPHA"
    _run([dg, "launch", "--job", "marketing_moestats_daily", "--partition", key], root, env)
    with connection(str(root / "warehouse" / "lake")) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM moestats.campaign_stats_raw WHERE stat_date = ?", [SMALL_DAY]
        ).fetchone()[0]
    assert stored == len(campaigns_on("WS_ALPHA", SMALL_DAY)) > 0
    assert sandbox.app.statuses()[200] >= 1


def test_a_bad_attribute_fails_dg_check_naming_the_component_and_key(project):
    root, env = project
    defs_yaml = root / "src" / "team_project" / "defs" / "moestats" / "defs.yaml"
    defs_yaml.write_text(defs_yaml.read_text().replace("timezone: Asia/Kolkata",
                                                       "timezone: Mars/Olympus"))  # fmt: skip
    done = subprocess.run([str(BIN / "dg"), "check", "defs"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert (
        "component MoEngageStats at" in output
        and "'Mars/Olympus' is not an IANA time zone" in output
    )
