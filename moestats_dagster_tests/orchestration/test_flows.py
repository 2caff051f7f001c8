"""Flow-linked campaigns end to end: found, named to the Stats API, stored, summed, reported."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest
from dagster import DagsterInstance, materialize

from moestats_dagster.lakehouse.warehouse import connection
from moestats_dagster.moengage import StatsClient
from moestats_dagster.orchestration.lib.check_specs import COMPLETE_NAME
from moestats_dagster.sandbox import DEFAULT_WORKSPACES
from moestats_dagster.sandbox.flows import flow_campaigns_on, flows_of
from moestats_dagster_tests.conftest import ALPHA_KEY
from moestats_dagster_tests.helpers import build, run_partition, slice_of

DAY = dt.date(2024, 11, 5)
ALPHA = {
    "id": "WS_ALPHA",
    "api_key": ALPHA_KEY,
    "campaigns_api_key_env": "TEST_V5_WS_ALPHA",
    "flows": "auto",
}


def alpha(write_workspaces, server, monkeypatch, top=None, **options):
    monkeypatch.setenv("TEST_V5_WS_ALPHA", "sandbox-campaigns-key-alpha")
    return write_workspaces(server, {**ALPHA, **options}, **(top or {}))


def stats_metadata(result) -> dict:
    [raw] = [m for m in result.asset_materializations_for_node("campaign_stats")
             if m.asset_key.path[-1] == "campaign_stats_raw"]  # fmt: skip
    return {k: v.value for k, v in raw.metadata.items()}


def by_workspace(defs) -> list:
    """The per-workspace assets (metadata, flows, summaries, report)."""
    return [a for a in defs.assets if a.partitions_def is not None
            and not hasattr(a.partitions_def, "partitions_defs")
            and "WS_ALPHA" in a.partitions_def.get_partition_keys()]  # fmt: skip


def test_a_day_stores_every_flow_campaign_that_sent_with_the_values_the_api_gave(
    sandbox, write_workspaces, monkeypatch, database, limiter_dir
):
    defs = build(alpha(write_workspaces, sandbox, monkeypatch), database, limiter_dir)
    result = run_partition(defs, DAY, "WS_ALPHA")
    meta = stats_metadata(result)
    complete = [e for e in result.get_asset_check_evaluations() if e.check_name == COMPLETE_NAME]
    assert complete and all(e.passed for e in complete)  # the proof covers the named ids too
    sent = {c.campaign_id for c in flow_campaigns_on(DEFAULT_WORKSPACES[0], DAY)}
    flows = flows_of("WS_ALPHA", 6)
    kinds = {  # the day's senders include a stopped flow's, an archived one's and retired steps
        "stopped": {c for f in flows if f.status == "STOPPED" for c in f.campaigns()},
        "archived": {c for f in flows if f.archived for c in f.campaigns()},
        "retired": {c.campaign_id for f in flows for v in f.versions[:-1] for c in v.steps}
        - {c.campaign_id for f in flows for c in f.versions[-1].steps},
    }
    assert all(sent & ids for ids in kinds.values())

    raw = slice_of(database, "campaign_stats_raw", DAY, "WS_ALPHA")
    assert sent <= set(raw.campaign_id)
    with StatsClient(workspace_id="WS_ALPHA", api_key=ALPHA_KEY, base_url=sandbox.url) as client:
        asked = client.fetch_day(stat_date=DAY, metric_type="TOTAL",
                                 attribution_type="VIEW_THROUGH", campaign_ids=sorted(sent))  # fmt: skip
    stored = raw[(raw.metric_type == "TOTAL") & (raw.attribution_type == "VIEW_THROUGH")]
    for row in stored[stored.campaign_id.isin(sent)].itertuples():
        assert json.loads(row.payload) == json.loads(asked.campaigns[row.campaign_id])
    assert meta["flow_campaigns_answered"] == len(sent)
    assert meta["flow_campaigns_asked"] == len(sent) + meta["flow_campaigns_without_stats"]
    assert meta["api_429s"] == 0 and meta["flows"] == 6


def test_the_next_night_reads_no_unchanged_flow(
    sandbox, write_workspaces, monkeypatch, database, limiter_dir
):
    defs = build(alpha(write_workspaces, sandbox, monkeypatch), database, limiter_dir)
    first = stats_metadata(run_partition(defs, DAY, "WS_ALPHA"))
    retired = sum(len(f.versions) - 1 for f in flows_of("WS_ALPHA", 6))
    assert (first["flow_discovery_calls"], first["flows_read"]) == (1 + 6 + retired, 6)
    following = stats_metadata(run_partition(defs, DAY + dt.timedelta(1), "WS_ALPHA"))
    assert (following["flow_discovery_calls"], following["flows_read"]) == (1, 0)


def test_a_campaign_ids_filter_loads_exactly_those_ids_without_discovery(
    sandbox, write_workspaces, monkeypatch, database, limiter_dir
):
    step = sorted(c.campaign_id for c in flow_campaigns_on(DEFAULT_WORKSPACES[0], DAY))[0]
    path = alpha(write_workspaces, sandbox, monkeypatch, campaign_ids=[step])
    run_partition(build(path, database, limiter_dir), DAY, "WS_ALPHA")
    assert set(slice_of(database, "campaign_stats_raw", DAY, "WS_ALPHA").campaign_id) == {step}
    assert not [c for c in sandbox.app.calls if c.path.startswith("/v5/flows")]


def test_without_flow_access_the_other_campaigns_load_and_one_warning_says_what_to_ask_for(
    make_sandbox, write_workspaces, monkeypatch, database, limiter_dir
):
    server = make_sandbox(workspaces=[dataclasses.replace(DEFAULT_WORKSPACES[0],
                                                          flows_access=False)])  # fmt: skip
    defs = build(alpha(write_workspaces, server, monkeypatch), database, limiter_dir)
    instance = DagsterInstance.ephemeral()
    meta = stats_metadata(run_partition(defs, DAY, "WS_ALPHA", instance=instance))
    assert "AccessDeniedError" in meta["flows_unavailable"]
    assert len(slice_of(database, "campaign_stats_raw", DAY, "WS_ALPHA"))  # the others loaded
    said = []
    for _ in range(2):
        result = materialize(by_workspace(defs), partition_key="WS_ALPHA",
                             resources=defs.resources, instance=instance)  # fmt: skip
        [check] = [e for e in result.get_asset_check_evaluations()
                   if e.check_name == "flows_available"]  # fmt: skip
        said.append((check.passed, check.metadata["already_reported"].value,
                     check.metadata["summary"].value))  # fmt: skip
    assert [s[:2] for s in said] == [(False, False), (False, True)]  # Slack hears it once
    assert "Flows API" in said[0][2] and "campaigns:view" in said[0][2]


def test_flow_summary_sums_a_flows_steps_per_day_total_counts_only(
    sandbox, write_workspaces, monkeypatch, database, limiter_dir
):
    defs = build(alpha(write_workspaces, sandbox, monkeypatch), database, limiter_dir)
    instance = DagsterInstance.ephemeral()
    run_partition(defs, DAY, "WS_ALPHA", instance=instance)
    materialize(by_workspace(defs), partition_key="WS_ALPHA", resources=defs.resources,
                instance=instance)  # fmt: skip
    with connection(database) as conn:
        rows = conn.execute(
            "SELECT f.flow_id, f.sent, (SELECT sum(s.sent) FROM moestats.campaign_daily_summary s "
            "WHERE s.metric_type = 'TOTAL' AND s.stat_date = f.stat_date AND s.campaign_id IN "
            "(SELECT campaign_id FROM moestats.flow_campaigns c WHERE c.flow_id = f.flow_id)) "
            "FROM moestats.flow_daily_summary f WHERE f.workspace_id = 'WS_ALPHA'"
        ).fetchall()
        steps = conn.execute("SELECT count(DISTINCT campaign_id) FROM moestats.flow_campaigns"
                             ).fetchone()[0]  # fmt: skip
    assert len(rows) == sum(
        1 for f in flows_of("WS_ALPHA", 6) if not f.stopped_on or f.stopped_on > DAY
    )
    assert all(sent == expected for _, sent, expected in rows)
    assert steps == len({c for f in flows_of("WS_ALPHA", 6) for c in f.campaigns()})


def test_a_month_names_flow_campaigns_too(
    sandbox, write_workspaces, monkeypatch, database, limiter_dir
):
    path = alpha(write_workspaces, sandbox, monkeypatch, top={"periods": ["month"]})
    defs = build(path, database, limiter_dir)
    [month] = [
        a for a in defs.assets if any(k.path[-1] == "campaign_monthly_stats" for k in a.keys)
    ]
    result = materialize([month], partition_key="2024-11-01|WS_ALPHA", resources=defs.resources,
                         instance=DagsterInstance.ephemeral())  # fmt: skip
    [meta] = [{k: v.value for k, v in m.metadata.items()}
              for m in result.get_asset_materialization_events()
              for m in [m.event_specific_data.materialization]]  # fmt: skip
    assert meta["flow_campaigns_answered"] > 0
    with connection(database) as conn:
        stored = {r[0] for r in conn.execute(
            "SELECT DISTINCT campaign_id FROM moestats.campaign_period_stats").fetchall()}  # fmt: skip
    in_month = {c.campaign_id for d in range(30)
                for c in flow_campaigns_on(DEFAULT_WORKSPACES[0], dt.date(2024, 11, 1) + dt.timedelta(d))}  # fmt: skip
    assert in_month <= stored


def test_without_the_flows_api_campaign_search_finds_the_flow_campaigns_once_a_day(
    make_sandbox, write_workspaces, monkeypatch, database, limiter_dir
):
    server = make_sandbox(workspaces=[dataclasses.replace(DEFAULT_WORKSPACES[0],
                                                          flows_access=False)])  # fmt: skip
    defs = build(alpha(write_workspaces, server, monkeypatch), database, limiter_dir)
    meta = stats_metadata(run_partition(defs, DAY, "WS_ALPHA"))
    assert "AccessDeniedError" in meta["flows_unavailable"]
    assert "campaign search" in meta["flows_found_by"]
    sent = {c.campaign_id for c in flow_campaigns_on(DEFAULT_WORKSPACES[0], DAY)}
    assert sent <= set(slice_of(database, "campaign_stats_raw", DAY, "WS_ALPHA").campaign_id)
    listings = len([c for c in server.app.calls if c.path == "/v5/campaigns/search"])
    again = stats_metadata(run_partition(defs, DAY + dt.timedelta(1), "WS_ALPHA"))
    assert again["flows_found_by"] == "campaign search (read today)"
    assert len([c for c in server.app.calls if c.path == "/v5/campaigns/search"]) == listings


def test_a_never_ending_flows_api_costs_one_discovery_per_run_and_none_on_its_retry(
    make_sandbox, write_workspaces, monkeypatch, database, limiter_dir
):
    import dataclasses

    from dagster import DagsterInstance, materialize

    from moestats_dagster_tests.helpers import stats_assets
    from moestats_dagster_tests.orchestration.test_backfill_runs import range_tags

    many = dataclasses.replace(DEFAULT_WORKSPACES[0], flows=250)  # flows/search pages for ever
    server = make_sandbox(workspaces=[many], flow_cursor="stuck")
    path = alpha(write_workspaces, server, monkeypatch, metric_types=["TOTAL"],
                 attribution_types=["IN_SESSION"])  # fmt: skip
    defs = build(path, database, limiter_dir, max_retries=0)
    instance = DagsterInstance.ephemeral()
    days = [DAY + dt.timedelta(days=n) for n in range(3)]
    tags = range_tags(days[0], days[-1], "WS_ALPHA")

    def searches() -> int:
        return sum(c.path == "/v5/flows/search" for c in server.app.calls)

    first = materialize(stats_assets(defs), resources=defs.resources, instance=instance,
                        tags=tags, raise_on_error=False)  # fmt: skip
    one_discovery = searches()
    assert not first.success and one_discovery == 2  # a page, then the cursor that repeats
    [failure] = [e for e in first.all_events if e.event_type_value == "STEP_FAILURE"]
    said = failure.step_failure_data.user_failure_data.description
    assert said.startswith("3 of 3 days failed") and "twice" in said
    for day in days:  # each day named once, never "day: day: ..."
        key = f"{day}|WS_ALPHA"
        assert said.count(key) == 1 and f"{key}: {key}" not in said

    retry = materialize(stats_assets(defs), resources=defs.resources, instance=instance,
                        tags={**tags, "dagster/parent_run_id": first.run_id},
                        raise_on_error=False)  # fmt: skip
    assert searches() == one_discovery  # the retry does not ask the same endless API again
    [failure] = [e for e in retry.all_events if e.event_type_value == "STEP_FAILURE"]
    said = failure.step_failure_data.user_failure_data.description
    assert "does not ask again" in said and first.run_id[:8] in said and "twice" in said


def test_a_flow_that_cannot_be_read_is_named_with_its_endpoint(
    make_sandbox, write_workspaces, monkeypatch, database, limiter_dir
):
    from moestats_dagster.moengage import MoEngageError
    from moestats_dagster.moengage.flows import FlowsClient  # noqa: F401 (the client under test)
    from moestats_dagster.orchestration.lib.resources import MoEngageResource

    server = make_sandbox(fail_after=1)  # the search answers, every flow's GET answers 500
    path = alpha(write_workspaces, server, monkeypatch)
    from moestats_dagster.config import load_settings

    resource = MoEngageResource.for_settings(load_settings(path), limiter_dir=limiter_dir,
                                             max_retries=0, backoff_factor=0.01)  # fmt: skip
    with resource.flows_client("WS_ALPHA") as client, pytest.raises(MoEngageError) as info:
        client.discover({})
    flow = next(f for f in flows_of("WS_ALPHA", 6) if str(info.value).find(f.flow_id) >= 0)
    assert f"flow {flow.flow_id} ({flow.name}), GET /v5/flows/{flow.flow_id}:" in str(info.value)
