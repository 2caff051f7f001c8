"""Campaign metadata: sandbox endpoint, client, the campaigns asset, its checks and the summary."""

from __future__ import annotations

import base64
import datetime as dt

import pandas as pd
import pytest
import requests
from dagster import DagsterInstance

from moestats_dagster.lakehouse.warehouse import connection, table_name
from moestats_dagster.model.schemas import CAMPAIGNS, CONVERSION_GOAL_STATS, VIEWS
from moestats_dagster.moengage import AccessDeniedError, CampaignMetaClient, IncompleteDataError
from moestats_dagster.orchestration.build import CAMPAIGNS_JOB, JOB_NAME
from moestats_dagster.orchestration.lib.partitions import partition_key
from moestats_dagster.sandbox.app import SandboxWorkspace
from moestats_dagster.sandbox.flows import flows_of
from moestats_dagster.sandbox.generator import campaign_id_for, campaigns_on
from moestats_dagster.sandbox.meta import META_PATH
from moestats_dagster_tests.conftest import ALPHA_KEY, MULTI_PAGE_DAY, PATIENCE, SMALL_DAY
from moestats_dagster_tests.helpers import build

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
FLOW_STEPS = len({c for f in flows_of("WS_ALPHA", 6) for c in f.campaigns()})


def campaign_checks(result) -> list:
    """The checks of the metadata and summaries: not `flows_available`, which warns (rightly)
    that these workspaces have no v5 key to find flows with (test_flows.py covers it)."""
    return [e for e in result.get_asset_check_evaluations() if e.check_name != "flows_available"]


ALPHA = {"id": "WS_ALPHA", "api_key": ALPHA_KEY}


def post_meta(server, body):
    token = base64.b64encode(f"WS_ALPHA:{ALPHA_KEY}".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "MOE-APPKEY": "WS_ALPHA"}
    return requests.post(server.url + META_PATH, json=body, headers=headers, timeout=PATIENCE)


def test_meta_endpoint_answers_a_bare_array_15_a_page(sandbox):
    first = post_meta(sandbox, {"request_id": "r", "include_child_campaigns": True}).json()
    assert isinstance(first, list) and len(first) == 15  # no envelope, as MoEngage documents
    # the 80 campaigns and WS_ALPHA's 18 flow steps (children of their flows)
    last = post_meta(sandbox, {"request_id": "r", "include_child_campaigns": True, "page": 7})
    assert len(last.json()) == 80 + FLOW_STEPS - 6 * 15  # the short page that ends a walk
    parents_only = post_meta(sandbox, {"request_id": "r", "limit": 15, "page": 1}).json()
    assert all("parent_campaign_id" not in c for c in parents_only)
    for body, field in [
        ({"request_id": "r", "limit": 16}, "limit"),
        ({"request_id": "r", "page": 0}, "page"),
    ]:
        resp = post_meta(sandbox, body)
        assert resp.status_code == 400 and field in resp.json()["description"]
        assert resp.json()["title"] == "Bad Request"


def post(server, path, body, key, **headers):
    token = base64.b64encode(f"WS_ALPHA:{key}".encode()).decode()
    headers = {"Authorization": f"Basic {token}", **headers}
    return requests.post(server.url + path, json=body, headers=headers, timeout=PATIENCE)


def test_search_endpoints_serve_the_same_campaigns_with_their_documented_shapes_and_keys(sandbox):
    """v1 search: report key, bare array, archived only when asked. v5: its own key, an
    Idempotency-Key per call (a reused one replays the first answer), the envelope."""
    v1 = "/core-services/v1/campaigns/search"
    body = {"request_id": "r", "include_child_campaigns": True, "limit": 15}
    first = post(sandbox, v1, body, ALPHA_KEY, **{"MOE-APPKEY": "WS_ALPHA"}).json()
    assert isinstance(first, list) and first[0]["basic_details"]["name"]
    everything = [post(sandbox, v1, {**body, "page": p, "include_archive_campaigns": True},
                       ALPHA_KEY, **{"MOE-APPKEY": "WS_ALPHA"}).json() for p in range(1, 8)]  # fmt: skip
    ids = {c["campaign_id"] for page in everything for c in page}
    assert len(ids) == 80 + FLOW_STEPS and any(
        c["status"] == "ARCHIVED" for p in everything for c in p
    )
    assert post(sandbox, v1, body, ALPHA_KEY).status_code == 401  # MOE-APPKEY required

    v5 = "/v5/campaigns/search"
    v5_key = "sandbox-campaigns-key-alpha"
    assert post(sandbox, v5, body, ALPHA_KEY, **{"Idempotency-Key": "a"}).status_code == 401
    assert post(sandbox, v5, body, v5_key).status_code == 400  # no Idempotency-Key
    one = post(sandbox, v5, {**body, "page": 1}, v5_key, **{"Idempotency-Key": "k1"}).json()
    assert one["type"] == "campaign" and len(one["data"]["campaigns"]) == 15
    replay = post(sandbox, v5, {**body, "page": 2}, v5_key, **{"Idempotency-Key": "k1"}).json()
    assert replay == one  # a reused key replays the first answer
    fresh = post(sandbox, v5, {**body, "page": 2}, v5_key, **{"Idempotency-Key": "k2"}).json()
    assert fresh["data"]["campaigns"] != one["data"]["campaigns"]
    docs = one["data"]["campaigns"] + fresh["data"]["campaigns"]
    assert all(d["status"] != "DRAFT" for d in docs)  # drafts only when asked for
    assert {d["campaign_id"] for d in docs} < ids  # the same universe


def meta_client(server, **options) -> CampaignMetaClient:
    return CampaignMetaClient(
        workspace_id="WS_ALPHA", api_key=ALPHA_KEY, base_url=server.url, **options
    )


def test_meta_client_asks_15_ids_at_a_time_and_skips_unknown_ids(sandbox):
    ids = [campaign_id_for("WS_ALPHA", i) for i in range(40)] + ["f" * 24]
    with meta_client(sandbox) as client:
        found = client.fetch_campaigns(ids + ids[:5])
        # 41 distinct ids: chunks of 15 + 15 + 11, each walked until a short page
        assert 3 <= client.counters.calls <= 6
    assert sorted(c["campaign_id"] for c in found) == sorted(ids[:40])
    child = next(c for c in found if c["campaign_id"] == campaign_id_for("WS_ALPHA", 3))
    assert child["parent_campaign_id"] == campaign_id_for("WS_ALPHA", 2)


def test_children_beyond_the_ids_asked_for_are_accepted(sandbox):
    parent, child = campaign_id_for("WS_ALPHA", 2), campaign_id_for("WS_ALPHA", 3)
    with meta_client(sandbox) as client:
        found = {c["campaign_id"]: c for c in client.fetch_campaigns([parent])}
    assert set(found) == {parent, child}
    assert found[child]["parent_campaign_id"] == parent


def test_an_envelope_around_the_array_is_tolerated(make_sandbox):
    server = make_sandbox(meta_envelope=True)
    ids = [campaign_id_for("WS_ALPHA", i) for i in range(20)]
    with meta_client(server) as client:
        assert {c["campaign_id"] for c in client.fetch_campaigns(ids)} == set(ids)


def test_a_server_that_ignores_page_fails_instead_of_looping(make_sandbox):
    server = make_sandbox()
    server.app.route(META_PATH, lambda ws, body: [{"campaign_id": f"c{i}"} for i in range(15)],
                     access="meta_access")  # fmt: skip
    with meta_client(server) as client, pytest.raises(IncompleteDataError, match="repeats"):
        client.fetch_campaigns(["c1"])
    assert client.counters.calls == 2


def test_campaign_meta_403_says_to_ask_for_early_access(sandbox):
    with (
        CampaignMetaClient(
            workspace_id="WS_NO_META", api_key="sandbox-key-no-meta", base_url=sandbox.url
        ) as client,
        pytest.raises(AccessDeniedError) as info,
    ):
        client.fetch_campaigns(["abc"])
    message = str(info.value)
    assert "Early Access" in message and "enable Campaign Meta" in message
    assert 'title="Forbidden Request", description=null' in message
    assert client.counters.calls == 1


@pytest.fixture
def materialized(make_sandbox, write_workspaces, database, limiter_dir):
    """Stats of two days, then the campaigns job, against a sandbox with the given defects."""

    def run(*defects):
        server = make_sandbox(defects=set(defects))
        defs = build(write_workspaces(server, ALPHA), database, limiter_dir)
        instance = DagsterInstance.ephemeral()
        daily = defs.resolve_job_def(JOB_NAME)
        for day in (SMALL_DAY, MULTI_PAGE_DAY):
            daily.execute_in_process(
                partition_key=partition_key(day, "WS_ALPHA"), instance=instance, run_config=QUIET
            )
        return defs.resolve_job_def(CAMPAIGNS_JOB).execute_in_process(
            partition_key="WS_ALPHA", instance=instance, run_config=QUIET, raise_on_error=False
        )

    return run


def query(database, sql, *params):
    with connection(database) as conn:
        tables = (CAMPAIGNS, CONVERSION_GOAL_STATS, *VIEWS.values())
        names = {t.name: table_name(conn, t) for t in tables}
        return conn.execute(sql.format(**names), list(params)).fetchdf()


def test_every_campaign_in_the_stats_gets_its_metadata(materialized, database):
    result = materialized()
    assert result.success
    assert all(e.passed for e in campaign_checks(result))
    frame = query(database, "SELECT * FROM {campaigns}")
    seen = {c.campaign_id for d in (SMALL_DAY, MULTI_PAGE_DAY) for c in campaigns_on("WS_ALPHA", d)}
    assert set(frame.campaign_id) >= seen and frame.campaign_id.is_unique
    extra = frame[~frame.campaign_id.isin(seen)]  # children of campaigns in the stats
    assert extra.parent_campaign_id.isin(seen).all()
    assert (frame.is_parent == frame.parent_campaign_id.isna()).all()
    assert frame.start_time.dtype.kind == "M" and frame.campaign_name.notna().all()


def test_campaigns_without_a_name_are_a_warning_listing_the_ids(materialized, database):
    result = materialized("missing_metadata")
    assert result.success
    [check] = [e for e in campaign_checks(result) if not e.passed]
    assert check.check_name == "stats_campaigns_have_names" and check.severity.value == "WARN"
    days = (SMALL_DAY, MULTI_PAGE_DAY)
    seen = {c.campaign_id for d in days for c in campaigns_on("WS_ALPHA", d)}
    stored = set(query(database, "SELECT * FROM {campaigns}").campaign_id)
    missing = check.metadata["missing_ids"].value
    # the sandbox drops the first campaign of each request
    assert missing and set(missing) <= seen - stored
    assert check.metadata["without_name"].value == len(missing)
    assert f"{len(missing)} of " in check.metadata["summary"].value


def test_a_parent_cycle_blocks_the_summary(materialized):
    result = materialized("parent_cycle")
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "campaigns.no_parent_cycles" in failure.event_specific_data.error.message
    assert "nothing was published" in failure.event_specific_data.error.message
    materialized_keys = {m.asset_key.path[-1] for m in result.get_asset_materialization_events()}
    assert "campaigns" not in materialized_keys  # the last good metadata stays
    assert "campaign_daily_summary" not in materialized_keys


def test_summary_counts_each_campaign_once_and_rolls_children_up(materialized, database):
    assert materialized().success
    summary = query(database, "SELECT * FROM {campaign_daily_summary} WHERE metric_type = 'TOTAL'")
    assert not summary.duplicated(["workspace_id", "stat_date", "campaign_id"]).any()
    assert summary.campaign_name.notna().all()
    rollup = query(
        database, "SELECT * FROM {parent_campaign_daily_summary} WHERE metric_type = 'TOTAL'"
    )
    for (day, parent), group in summary.groupby(["stat_date", "rollup_campaign_id"]):
        row = rollup[(rollup.stat_date == day) & (rollup.campaign_id == parent)]
        assert row.campaigns_rolled_up.item() == len(group)
        assert row.sent.item() == group.sent.sum(min_count=1) or (
            pd.isna(row.sent.item()) and group.sent.isna().all()
        )
    assert (rollup.campaigns_rolled_up > 1).any(), "these days should hold a parent with its child"


def test_summary_puts_revenue_per_attribution_type_next_to_conversions(materialized, database):
    assert materialized().success
    summary = query(database, "SELECT * FROM {campaign_daily_summary} WHERE metric_type = 'TOTAL'")
    for attribution in ("view_through", "in_session", "click_conversions"):
        assert f"revenue_{attribution}" in summary.columns
    with_revenue = summary[summary.revenue_view_through.notna()]
    assert len(with_revenue) and (with_revenue.revenue_view_through > 0).all()
    # revenue is summed over the same once-per-campaign block as conversions
    conv = query(
        database,
        "SELECT campaign_id, stat_date, sum(revenue) AS revenue FROM {conversion_goal_stats} "
        "WHERE metric_type = 'TOTAL' AND attribution_type = 'VIEW_THROUGH' "
        "AND locale = 'all_locales' AND variation = 'all_variations' "
        "AND platform IN ('all_platforms', 'EMAIL', 'SMS') GROUP BY ALL",
    )
    merged = with_revenue.merge(conv, on=["campaign_id", "stat_date"])
    assert len(merged) and (merged.revenue_view_through - merged.revenue).abs().max() < 1e-6


def _stats_then_campaigns(server, write_workspaces, database, limiter_dir, workspace, runs=1):
    defs = build(write_workspaces(server, workspace), database, limiter_dir)
    instance = DagsterInstance.ephemeral()
    day = next(SMALL_DAY - dt.timedelta(days=n) for n in range(30)
               if campaigns_on(workspace["id"], SMALL_DAY - dt.timedelta(days=n)))  # fmt: skip
    stats = defs.resolve_job_def(JOB_NAME).execute_in_process(
        partition_key=partition_key(day, workspace["id"]), instance=instance, run_config=QUIET
    )
    assert stats.success  # the Stats API is enabled: stats runs are unaffected
    return [
        defs.resolve_job_def(CAMPAIGNS_JOB).execute_in_process(
            partition_key=workspace["id"], instance=instance, run_config=QUIET
        )
        for _ in range(runs)
    ]


def _materialization(result, name: str):
    [event] = [e for e in result.get_asset_materialization_events()
               if e.asset_key.path[-1] == name]  # fmt: skip
    return event.materialization.metadata


def test_without_campaign_meta_names_come_from_campaigns_search(
    make_sandbox, write_workspaces, database, limiter_dir
):
    server = make_sandbox()
    workspace = {"id": "WS_NO_META", "api_key": "sandbox-key-no-meta"}
    [run] = _stats_then_campaigns(server, write_workspaces, database, limiter_dir, workspace)
    assert _materialization(run, "campaigns")["metadata_source"].value == "search"
    frame = query(database, "SELECT * FROM {campaigns}")
    assert len(frame) and frame.campaign_name.notna().all() and (frame.source == "search").all()
    assert frame.created_at.notna().all() and frame.team.notna().all()
    assert all(e.passed for e in campaign_checks(run))


def test_no_metadata_source_is_one_warning_naming_what_to_ask_for_not_a_nightly_failure(
    make_sandbox, write_workspaces, database, limiter_dir
):
    server = make_sandbox()
    workspace = {"id": "WS_NO_NAMES", "api_key": "sandbox-key-no-names"}
    first, second = _stats_then_campaigns(
        server, write_workspaces, database, limiter_dir, workspace, runs=2
    )
    for run in (first, second):
        assert run.success
        materialized = {e.asset_key.path[-1] for e in run.get_asset_materialization_events()}
        assert {"campaign_daily_summary", "campaign_report"} <= materialized  # bare ids, shown
    checks = {e.check_name: e for e in first.get_asset_check_evaluations()}
    source = checks["metadata_source_available"]
    assert not source.passed and source.severity.value == "WARN"
    summary = source.metadata["summary"].value
    assert "Campaign Meta" in summary and "v1/campaigns/search" in summary
    assert "campaigns_api_key_env" in summary  # v5: the key to create
    assert "sandbox-key-no-names" not in str(source.metadata)
    assert source.metadata["already_reported"].value is False  # Slack hears it once ...
    again = {e.check_name: e for e in second.get_asset_check_evaluations()}
    assert again["metadata_source_available"].metadata["already_reported"].value is True
    assert not checks["stats_campaigns_have_names"].passed


def test_v5_with_its_own_key_keeps_revisions_archived_and_never_sees_the_report_key(
    make_sandbox, write_workspaces, database, limiter_dir, monkeypatch
):
    server = make_sandbox(
        workspaces=[SandboxWorkspace("WS_ALPHA", ALPHA_KEY, v5_key="campaigns-key-alpha",
                                     search_access=False, meta_access=False)]
    )  # fmt: skip
    monkeypatch.setenv("TEST_CAMPAIGNS_KEY", "campaigns-key-alpha")
    workspace = {**ALPHA, "campaigns_api_key_env": "TEST_CAMPAIGNS_KEY"}
    [run] = _stats_then_campaigns(server, write_workspaces, database, limiter_dir, workspace)
    assert _materialization(run, "campaigns")["metadata_source"].value == "v5"
    frame = query(database, "SELECT * FROM {campaigns}")
    assert (frame.source == "v5").all() and frame.campaign_name.notna().all()
    revised = frame[frame.version_number == 2]
    assert len(revised) and revised.campaign_name.str.endswith("(v2)").all()  # the newest
    assert not frame.campaign_name.str.startswith("DRAFT").any()  # drafts are not campaigns
    assert frame.updated_at.notna().all() and frame.is_archived.notna().all()
    seen = server.app.keys_seen["/v5/campaigns/search"]
    assert seen and {key for key, _ in seen} == {"campaigns-key-alpha"}  # never ALPHA_KEY
    idempotency = [extra for _, extra in seen]
    assert None not in idempotency and len(set(idempotency)) == len(idempotency)  # fresh each


def test_v5_refuses_the_campaign_report_key_with_the_permission_to_ask_for(
    make_sandbox, write_workspaces, database, limiter_dir, monkeypatch
):
    server = make_sandbox(
        workspaces=[SandboxWorkspace("WS_ALPHA", ALPHA_KEY, v5_key="campaigns-key-alpha")]
    )
    monkeypatch.setenv("TEST_CAMPAIGNS_KEY", ALPHA_KEY)  # a user pasted the report key
    workspace = {**ALPHA, "campaigns_api_key_env": "TEST_CAMPAIGNS_KEY", "campaign_metadata": "v5"}
    [run] = _stats_then_campaigns(server, write_workspaces, database, limiter_dir, workspace)
    checks = {e.check_name: e for e in run.get_asset_check_evaluations()}
    reason = checks["metadata_source_available"].metadata["reasons"].value["v5"]
    assert "401" in reason and "Campaigns View permission" in reason
    assert ALPHA_KEY not in str(checks["metadata_source_available"].metadata)
