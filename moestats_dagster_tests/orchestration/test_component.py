"""The `MoEngageStats` component as a team's `dg` project loads it, in process (Dagster's
`create_defs_folder_sandbox`): scaffolded, configured in its defs.yaml beside the team's own
assets, listed and launched for one partition against the sandbox over HTTP. The one test that
builds a fresh project with create-dagster and `dg` is test_component_install.py."""

from __future__ import annotations

import textwrap

import pytest
from dagster import DagsterInstance
from dagster.components.testing import create_defs_folder_sandbox

from moestats_dagster.lakehouse.warehouse import connection
from moestats_dagster.orchestration.component import MoEngageStats
from moestats_dagster.sandbox.generator import campaigns_on
from moestats_dagster_tests.conftest import ALPHA_KEY, SMALL_DAY

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
TEAM = """\
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
"""


def _defs_yaml(url: str, timezone: str = "Asia/Kolkata") -> str:
    return textwrap.dedent(f"""\
        type: moestats_dagster.MoEngageStats
        attributes:
          start_date: "2024-12-01"
          timezone: {timezone}
          workspaces:
            - id: WS_ALPHA
              base_url: "{url}"
              api_key_env: TEST_KEY_WS_ALPHA
              flows: "off"  # the count below is the day's unnamed campaigns
              attribution_types: [VIEW_THROUGH]
              metric_types: [TOTAL]
          lake_path: warehouse/lake
          key_prefix: [marketing, moestats]
          group: marketing_moestats
        """)


@pytest.fixture
def box(sandbox, monkeypatch):
    """A defs folder with the component scaffolded (as `dg scaffold defs` does), pointed at the
    test's sandbox under the team's own prefix and group, and the team's own assets beside it."""
    monkeypatch.setenv("TEST_KEY_WS_ALPHA", ALPHA_KEY)
    with create_defs_folder_sandbox() as box:
        path = box.scaffold_component(MoEngageStats, defs_path="moestats")
        scaffolded = (path / "defs.yaml").read_text()
        assert scaffolded.startswith("type: moestats_dagster.") and "MoEngageStats" in scaffolded
        assert "base_url: sandbox" in scaffolded
        (path / "defs.yaml").write_text(_defs_yaml(sandbox.url))
        (box.defs_folder_path / "team.py").write_text(TEAM)
        yield box


def test_the_component_loads_beside_the_teams_assets_and_launches_a_partition(box, sandbox):
    with box.build_all_defs() as defs:
        graph = defs.resolve_asset_graph()
        assets = {k.to_user_string(): graph.get(k) for k in graph.get_all_asset_keys()}
        ours = {k for k in assets if k.startswith("marketing/moestats/")}
        assert ours == {
            f"marketing/moestats/{name}"
            for name in ("campaign_stats_raw", "performance_stats", "conversion_goal_stats",
                         "delivery_funnel", "failure_breakdown", "campaigns",
                         "campaign_daily_summary", "campaign_report", "stats_coverage",
                         "campaign_monthly_stats", "lake_maintenance", "flows", "flow_campaigns",
                         "flow_daily_summary", "reconciliation")
        }  # fmt: skip
        assert "campaigns" in assets  # the team's own, untouched
        assert {assets[k].group_name for k in ours} == {"marketing_moestats"}
        checks = {c.to_user_string() for a in assets.values() for c in a.check_keys}
        assert "marketing/moestats/performance_stats:headline_numbers_within_usual_range" in checks
        assert (
            "marketing/moestats/campaign_stats_raw:raw_complete_against_total_campaigns" in checks
        )
        jobs = {j.name for j in defs.resolve_all_job_defs()}
        assert jobs >= {"marketing_moestats_daily", "marketing_moestats_campaigns"}
        assert "marketing_moestats_automation" in {s.name for s in defs.sensors}
        assert {"warehouse", "moengage", "marketing_moestats_warehouse"} <= set(defs.resources)

        result = defs.resolve_job_def("marketing_moestats_daily").execute_in_process(
            partition_key=f"{SMALL_DAY.isoformat()}|WS_ALPHA",
            instance=DagsterInstance.ephemeral(),
            run_config=QUIET,
        )
    assert result.success
    with connection(str(box.project_root / "warehouse" / "lake")) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM moestats.campaign_stats_raw WHERE stat_date = ?", [SMALL_DAY]
        ).fetchone()[0]
    assert stored == len(campaigns_on("WS_ALPHA", SMALL_DAY)) > 0
    assert sandbox.app.statuses()[200] >= 1


def test_a_bad_attribute_fails_the_load_naming_the_component_and_key(box, sandbox):
    (box.defs_folder_path / "moestats" / "defs.yaml").write_text(
        _defs_yaml(sandbox.url, timezone="Mars/Olympus")
    )
    with pytest.raises(Exception) as failed, box.build_all_defs():
        pass
    said = "".join(str(e) for e in (failed.value, failed.value.__cause__) if e)
    assert "component MoEngageStats at" in said
    assert "'Mars/Olympus' is not an IANA time zone" in said
