"""A team's dbt project on the lake: sources that carry our asset keys, the example project
building on a sandbox-loaded lake, its models as Dagster assets downstream of ours, and the lake
read-only for dbt."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml
from dagster import AssetKey, DagsterInstance, materialize
from dagster.components.testing.utils import component_defs

from moestats_dagster.config import load_settings
from moestats_dagster.lakehouse.warehouse import connection
from moestats_dagster.model.schemas import TABLES, VIEWS
from moestats_dagster.orchestration.build import CAMPAIGNS_JOB, JOB_NAME, build_definitions
from moestats_dagster.orchestration.component import MoEngageStats
from moestats_dagster.orchestration.lib.conditions import REFRESH_AFTER_STATS
from moestats_dagster.orchestration.lib.dbt_sources import sources, sources_yaml
from moestats_dagster.orchestration.lib.metadata import Naming
from moestats_dagster.orchestration.lib.partitions import partition_key
from moestats_dagster.orchestration.lib.resources import MoEngageResource
from moestats_dagster.sandbox import DEFAULT_WORKSPACES, Faults, SandboxApp, SandboxServer
from moestats_dagster_tests.conftest import ALPHA_KEY

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "dbt_marketing"
BIN = Path(sys.executable).parent
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
WEEK = dt.date(2024, 12, 2)  # a Monday
DAYS = [WEEK + dt.timedelta(days=n) for n in range(3)]
PREFIXED = Naming(prefix=("marketing", "moestats"), group="marketing_moestats")


def _workspaces(folder: Path, url: str) -> Path:
    path = folder / "workspaces.yaml"
    path.write_text(
        'start_date: "2024-11-01"\nperiods: [week, month]\nworkspaces:\n'
        f"  - id: WS_ALPHA\n    base_url: {url}\n    api_key_env: DBT_TEST_KEY\n"
        "    campaigns_api_key_env: DBT_TEST_V5\n    flows: auto\n"
        "    metric_types: [TOTAL, UNIQUE]\n    attribution_types: [VIEW_THROUGH, CLICK_THROUGH]\n"
    )
    return path


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """A lake loaded from the sandbox over HTTP: three days of WS_ALPHA (flows included), its
    metadata, summary views and report, and the week's reach."""
    folder = tmp_path_factory.mktemp("dbt_lake")
    server = SandboxServer(SandboxApp(list(DEFAULT_WORKSPACES), faults=Faults())).start()
    env = {"DBT_TEST_KEY": ALPHA_KEY, "DBT_TEST_V5": "sandbox-campaigns-key-alpha",
           "MOESTATS_STATE_DIR": str(folder / "state"),
           "MOESTATS_REPORTS_PATH": str(folder / "reports")}  # fmt: skip
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        path = _workspaces(folder, server.url)
        database = str(folder / "lake")
        resource = MoEngageResource.for_settings(
            load_settings(path), limiter_dir=str(folder / "rl"), backoff_factor=0.01
        )
        defs = build_definitions(load_settings(path), database=database, moengage=resource)
        instance = DagsterInstance.ephemeral()
        for day in DAYS:
            defs.resolve_job_def(JOB_NAME).execute_in_process(
                partition_key=partition_key(day, "WS_ALPHA"), instance=instance, run_config=QUIET
            )
        defs.resolve_job_def(CAMPAIGNS_JOB).execute_in_process(
            partition_key="WS_ALPHA", instance=instance, run_config=QUIET
        )
        [weekly] = [a for a in defs.assets
                    if any(k.path[-1] == "campaign_weekly_stats" for k in a.keys)]  # fmt: skip
        assert materialize([weekly], partition_key=f"{WEEK}|WS_ALPHA", resources=defs.resources,
                           instance=instance, run_config=QUIET).success  # fmt: skip
        yield path, database, resource
    finally:
        server.stop()
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def project(tmp_path, loaded, monkeypatch) -> Path:
    """A copy of the example project (dbt writes target/ and logs/ into it), its models' DuckDB
    file in the test's folder."""
    copy = tmp_path / "dbt_marketing"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("target", "logs"))
    monkeypatch.setenv("MOESTATS_DBT_DATABASE", str(tmp_path / "dbt_marketing.duckdb"))
    monkeypatch.setenv("MOESTATS_LAKE_PATH", loaded[1])
    return copy


def _dbt(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "dbt"), *args, "--profiles-dir", str(project)],
        cwd=project, capture_output=True, text=True, timeout=600,
        env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
    )  # fmt: skip


def _models(tmp_path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(tmp_path / "dbt_marketing.duckdb"), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def test_every_table_and_view_is_a_source_carrying_the_asset_key_that_writes_it():
    for naming in (Naming(), PREFIXED):
        [source] = sources(naming)["sources"]
        assert (source["database"], source["schema"]) == ("lake", "moestats")
        covered = {t.get("identifier", t["name"]) for t in source["tables"]}
        assert covered == set(TABLES) | set(VIEWS)
        keys = {t["name"]: t["meta"]["dagster"]["asset_key"] for t in source["tables"]}
        assert keys["performance_stats"] == [*naming.prefix, "performance_stats"]
        assert keys["parent_campaign_daily_summary"] == [*naming.prefix, "campaign_daily_summary"]
        assert keys["campaign_weekly_goal_stats"] == [*naming.prefix, "campaign_weekly_stats"]
        perf = next(t for t in source["tables"] if t["name"] == "performance_stats")
        assert perf["columns"][0] == {"name": "workspace_id", "data_type": "VARCHAR",
                                      "description": TABLES["performance_stats"].columns[0]
                                      .description}  # fmt: skip


def test_every_sources_asset_key_is_an_asset_of_the_definitions(loaded):
    path, database, resource = loaded
    for naming in (Naming(), PREFIXED):
        defs = build_definitions(load_settings(path), database=database, naming=naming)
        ours = set(defs.resolve_asset_graph().get_all_asset_keys())
        [source] = sources(naming)["sources"]
        assert {AssetKey(t["meta"]["dagster"]["asset_key"]) for t in source["tables"]} <= ours


def test_the_example_projects_sources_are_what_the_command_writes(tmp_path):
    written = (EXAMPLE / "models" / "moestats_sources.yml").read_text()
    assert written == sources_yaml(Naming()), "run: moestats dbt sources --out " + str(
        EXAMPLE.relative_to(ROOT) / "models" / "moestats_sources.yml"
    )
    out = tmp_path / "sources.yml"
    done = subprocess.run([str(BIN / "moestats"), "dbt", "sources", "--key-prefix",
                           "marketing/moestats", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(out.read_text()) == sources(PREFIXED)


def test_the_example_builds_on_a_sandbox_loaded_lake(project, loaded, tmp_path):
    done = _dbt(project, "build")
    assert done.returncode == 0, done.stdout[-3000:]
    assert "PASS=" in done.stdout and "ERROR=0" in done.stdout
    # the weekly TOTALs are the days' TOTALs; reach is the week's UNIQUE, not a sum of days
    with connection(loaded[1]) as conn:
        sent, reach = conn.execute(
            "SELECT (SELECT sum(sent) FROM moestats.campaign_daily_summary WHERE metric_type = "
            "'TOTAL' AND stat_date BETWEEN ? AND ?), (SELECT sum(sent) FROM "
            "moestats.campaign_period_stats WHERE period = 'week' AND metric_type = 'UNIQUE' "
            "AND campaign_id IN (SELECT campaign_id FROM moestats.campaign_daily_summary "
            "WHERE metric_type = 'TOTAL'))",  # the week's campaigns that sent on a day loaded
            [DAYS[0], DAYS[-1]],
        ).fetchone()
        # every flow that answered, with sends or with late clicks and conversions only
        flows = conn.execute("SELECT count(DISTINCT flow_id) "
                             "FROM moestats.flow_daily_summary").fetchone()[0]  # fmt: skip
    [(model_sent, model_reach)] = _models(
        tmp_path, "SELECT sum(sent), sum(reach) FROM marketing.weekly_campaign_kpis"
    )
    assert sent > 0 and model_sent == sent
    assert reach > 0 and model_reach == reach
    assert flows > 0
    assert _models(tmp_path, "SELECT count(DISTINCT flow_id) FROM marketing.flow_weekly_kpis") == [
        (flows,)
    ]


def test_a_model_that_writes_into_the_lake_fails_and_the_lake_is_unchanged(
    project, loaded, tmp_path
):
    (project / "models" / "sneaky.sql").write_text(
        "{{ config(database='lake', schema='moestats', alias='performance_stats') }}\nselect 1 AS x\n"
    )
    with connection(loaded[1]) as conn:
        before = conn.execute("SELECT count(*) FROM moestats.performance_stats").fetchone()
    done = _dbt(project, "run", "--select", "sneaky")
    assert done.returncode != 0
    assert "read-only" in done.stdout.lower() or "read only" in done.stdout.lower(), done.stdout
    with connection(loaded[1]) as conn:
        assert conn.execute("SELECT count(*) FROM moestats.performance_stats").fetchone() == before


@pytest.mark.parametrize("naming", [Naming(), PREFIXED], ids=["moestats", "marketing/moestats"])
def test_the_dbt_models_are_assets_downstream_of_ours(project, loaded, naming):
    path, database, resource = loaded
    (project / "models" / "moestats_sources.yml").write_text(sources_yaml(naming))
    defs = build_definitions(load_settings(path), database=database, naming=naming,
                             moengage=resource, dbt_project=project)  # fmt: skip
    graph = defs.resolve_asset_graph()
    kpis = graph.get(AssetKey("weekly_campaign_kpis"))
    assert {naming.key_of("campaign_daily_summary"), naming.key_of("campaign_weekly_stats")} <= set(
        kpis.parent_keys
    )
    flows = graph.get(AssetKey("flow_weekly_kpis"))
    assert naming.key_of("flow_daily_summary") in flows.parent_keys
    assert kpis.automation_condition == REFRESH_AFTER_STATS
    sensor = defs.resolve_sensor_def(naming.name("automation"))
    assert AssetKey("weekly_workspace_kpis") in sensor.asset_selection.resolve(graph)


def test_materializing_the_dbt_models_through_dagster_works(project, loaded, tmp_path):
    path, database, resource = loaded
    defs = build_definitions(load_settings(path), database=database, moengage=resource,
                             dbt_project=project)  # fmt: skip
    [models] = [
        a for a in defs.assets if AssetKey("weekly_campaign_kpis") in getattr(a, "keys", ())
    ]
    result = materialize([models], resources=defs.resources, instance=DagsterInstance.ephemeral())
    assert result.success
    done = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert done == {"weekly_campaign_kpis", "weekly_workspace_kpis", "flow_weekly_kpis"}
    checks = result.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks)
    assert _models(tmp_path, "SELECT count(*) > 0 FROM marketing.weekly_workspace_kpis") == [
        (True,)
    ]


def test_the_component_loads_a_dbt_project_in_process(project, loaded):
    path, database, resource = loaded
    (project / "models" / "moestats_sources.yml").write_text(sources_yaml(PREFIXED))
    attributes = yaml.safe_load(path.read_text())
    component = MoEngageStats(**attributes, lake_path=database, key_prefix=list(PREFIXED.prefix),
                              group=PREFIXED.group, dbt_project=str(project))  # fmt: skip
    defs = component_defs(component=component)
    graph = defs.resolve_asset_graph()
    kpis = graph.get(AssetKey("weekly_campaign_kpis"))
    assert PREFIXED.key_of("campaign_weekly_stats") in kpis.parent_keys  # periods: [week, month]
    assert PREFIXED.key_of("campaign_daily_summary") in kpis.parent_keys
    assert {"marketing_moestats_dbt", "marketing_moestats_warehouse"} <= set(defs.resources)
