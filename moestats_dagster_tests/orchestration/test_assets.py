"""Partitions materialized through Dagster against the sandbox, asserted on the DuckDB tables."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest
from dagster import DagsterInstance

from moestats_dagster.lakehouse.warehouse import connection
from moestats_dagster.model.normalize import PERF_KEYS
from moestats_dagster.model.schemas import GOAL_METRICS
from moestats_dagster.sandbox.generator import campaign_entries, campaigns_on
from moestats_dagster_tests.conftest import ALPHA_KEY, EMPTY_DAY, MULTI_PAGE_DAY, SMALL_DAY
from moestats_dagster_tests.helpers import build, run_partition, slice_of

ALPHA = {"id": "WS_ALPHA", "api_key": ALPHA_KEY}
ONE_ATTRIBUTION = {**ALPHA, "attribution_types": ["IN_SESSION"]}
TWO_ATTRIBUTIONS = {**ALPHA, "attribution_types": ["CLICK_THROUGH", "VIEW_THROUGH"]}
NORMALIZED = ("performance_stats", "conversion_goal_stats", "delivery_funnel", "failure_breakdown")


@pytest.fixture
def alpha_defs(sandbox, write_workspaces, database, limiter_dir):
    return build(write_workspaces(sandbox, TWO_ATTRIBUTIONS), database, limiter_dir)


def _blocks(entries):
    for ei, entry in enumerate(entries):
        for pk, platform in entry["platforms"].items():
            for lk, locale in platform["locales"].items():
                for vk, block in locale["variations"].items():
                    yield (ei, pk, lk, vk), block


def test_every_number_the_api_sent_lands_unchanged(alpha_defs, database):
    run_partition(alpha_defs, MULTI_PAGE_DAY, "WS_ALPHA")
    raw = slice_of(database, "campaign_stats_raw", MULTI_PAGE_DAY, "WS_ALPHA")
    perf = slice_of(database, "performance_stats", MULTI_PAGE_DAY, "WS_ALPHA")
    conv = slice_of(database, "conversion_goal_stats", MULTI_PAGE_DAY, "WS_ALPHA")
    perf = perf.set_index(
        ["metric_type", "campaign_id", "entry_index", "platform", "locale", "variation"]
    )
    conv = conv.set_index(
        [
            "metric_type",
            "attribution_type",
            "campaign_id",
            "entry_index",
            "platform",
            "locale",
            "variation",
            "goal_key",
        ]  # fmt: skip
    )
    campaigns = campaigns_on("WS_ALPHA", MULTI_PAGE_DAY)
    assert len(raw) == len(campaigns) * 2 * 2  # metric types x attribution types
    checked = published = 0
    for campaign in campaigns:
        for metric in ("TOTAL", "UNIQUE"):
            for attribution in ("CLICK_THROUGH", "VIEW_THROUGH"):
                entries = campaign_entries(
                    "WS_ALPHA", campaign, MULTI_PAGE_DAY.isoformat(), metric, attribution
                )
                stored = raw[
                    (raw.campaign_id == campaign.campaign_id)
                    & (raw.metric_type == metric)
                    & (raw.attribution_type == attribution)
                ]
                assert json.loads(stored.payload.item()) == entries  # raw is verbatim
                for (ei, pk, lk, vk), block in _blocks(entries):
                    for goal, values in block["conversion_goal_stats"].items():
                        row = conv.loc[
                            (metric, attribution, campaign.campaign_id, ei, pk, lk, vk, goal)
                        ]
                        for key in GOAL_METRICS:  # the page's fields and the published schema's
                            expected = values.get(key)
                            assert (pd.isna(row[key]) and expected is None) or row[key] == expected
                            published += key == "revenue" and expected is not None
                        assert pd.isna(row["extra_metrics"])
                    # performance comes from the first configured attribution type
                    if attribution == "CLICK_THROUGH" and "performance_stats" in block:
                        row = perf.loc[(metric, campaign.campaign_id, ei, pk, lk, vk)]
                        for key in PERF_KEYS:
                            expected = block["performance_stats"].get(key)
                            assert (pd.isna(row[key]) and expected is None) or row[key] == expected
                            checked += expected is not None
    assert checked > 1000
    assert published > 10, "the sandbox sends revenue on a share of goals"


def test_published_schema_fields_are_typed_columns_not_drift(alpha_defs, database):
    result = run_partition(alpha_defs, MULTI_PAGE_DAY, "WS_ALPHA")
    drift = [e for e in result.get_asset_check_evaluations()
             if e.check_name == "no_undocumented_metric_keys"]  # fmt: skip
    assert len(drift) == 3 and all(e.passed for e in drift)
    conv = slice_of(database, "conversion_goal_stats", MULTI_PAGE_DAY, "WS_ALPHA")
    funnel = slice_of(database, "delivery_funnel", MULTI_PAGE_DAY, "WS_ALPHA")
    for column in ("goal_name", "total", "unique", "revenue", "average_order_value",
                   "average_revenue_per_user", "gcg_uplift"):  # fmt: skip
        assert conv[column].notna().any(), column
    for column in ("total_user_in_segment", "user_with_email", "user_with_email_after__h_b",
                   "user_after_duplicate_removal", "after_personalization_removal", "delivered"):  # fmt: skip
        assert funnel[column].notna().any(), column
    assert conv.extra_metrics.isna().all() and funnel.extra_metrics.isna().all()
    assert conv.revenue.isna().any()  # a realistic share: not every goal has revenue
    with connection(database) as conn:
        types = dict(conn.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ?",
            ["conversion_goal_stats"],
        ).fetchall())  # fmt: skip
    assert types["total"] == types["unique"] == "BIGINT"
    assert types["revenue"] == types["gcg_uplift"] == "DOUBLE" and types["goal_name"] == "VARCHAR"


def test_control_groups_and_multi_entry_campaigns_are_kept(alpha_defs, database):
    run_partition(alpha_defs, MULTI_PAGE_DAY, "WS_ALPHA")
    for table in ("conversion_goal_stats", "delivery_funnel", "failure_breakdown"):
        frame = slice_of(database, table, MULTI_PAGE_DAY, "WS_ALPHA")
        assert {"campaign_control_group", "global_control_group"} <= set(frame.variation)
    failures = slice_of(database, "failure_breakdown", MULTI_PAGE_DAY, "WS_ALPHA")
    assert "user_removed_due_to_campaing_control_group" in set(failures.reason)  # API's spelling
    multi = [c for c in campaigns_on("WS_ALPHA", MULTI_PAGE_DAY) if c.entries > 1]
    assert multi, "the test day should hold a campaign with two entries"
    perf = slice_of(database, "performance_stats", MULTI_PAGE_DAY, "WS_ALPHA")
    assert set(perf[perf.campaign_id == multi[0].campaign_id].entry_index) == {0, 1}
    assert perf.extra_metrics.isna().all()


def test_nested_failure_reasons_are_flattened_with_dots(alpha_defs, database):
    run_partition(alpha_defs, MULTI_PAGE_DAY, "WS_ALPHA")
    reasons = set(slice_of(database, "failure_breakdown", MULTI_PAGE_DAY, "WS_ALPHA").reason)
    assert "provider_errors.Timeout" in reasons


def test_unknown_metric_keys_land_in_extra_metrics(
    make_sandbox, write_workspaces, database, limiter_dir
):
    server = make_sandbox(defects={"unknown_metrics"})
    defs = build(write_workspaces(server, ALPHA), database, limiter_dir)
    run_partition(defs, SMALL_DAY, "WS_ALPHA")
    perf = slice_of(database, "performance_stats", SMALL_DAY, "WS_ALPHA")
    funnel = slice_of(database, "delivery_funnel", SMALL_DAY, "WS_ALPHA")
    assert perf.extra_metrics.dropna().map(json.loads).tolist() == [{"amp_opens": 17}] * 2
    assert funnel.extra_metrics.dropna().map(json.loads).tolist() == [{"after_dnd_removal": 23}] * 2


def test_empty_day_is_a_valid_empty_partition(alpha_defs, database):
    result = run_partition(alpha_defs, EMPTY_DAY, "WS_ALPHA")
    assert result.success
    for table in ("campaign_stats_raw", *NORMALIZED):
        assert slice_of(database, table, EMPTY_DAY, "WS_ALPHA").empty  # the table exists


def test_rerunning_a_partition_replaces_it_without_duplicates(alpha_defs, database):
    run_partition(alpha_defs, SMALL_DAY, "WS_ALPHA")
    run_partition(alpha_defs, MULTI_PAGE_DAY, "WS_ALPHA")
    first = {t: slice_of(database, t, SMALL_DAY, "WS_ALPHA") for t in NORMALIZED}
    other_day = slice_of(database, "performance_stats", MULTI_PAGE_DAY, "WS_ALPHA")
    run_partition(alpha_defs, SMALL_DAY, "WS_ALPHA")
    for table in NORMALIZED:
        pd.testing.assert_frame_equal(
            slice_of(database, table, SMALL_DAY, "WS_ALPHA"), first[table]
        )
    pd.testing.assert_frame_equal(
        slice_of(database, "performance_stats", MULTI_PAGE_DAY, "WS_ALPHA"), other_day
    )
    raw = slice_of(database, "campaign_stats_raw", SMALL_DAY, "WS_ALPHA")
    assert not raw.duplicated(["metric_type", "attribution_type", "campaign_id"]).any()


def test_a_failing_call_mid_partition_keeps_the_previous_slice(
    sandbox, write_workspaces, database, limiter_dir
):
    defs = build(write_workspaces(sandbox, ALPHA), database, limiter_dir, max_retries=1)
    run_partition(defs, MULTI_PAGE_DAY, "WS_ALPHA")
    before = {
        t: slice_of(database, t, MULTI_PAGE_DAY, "WS_ALPHA")
        for t in ("campaign_stats_raw", *NORMALIZED)
    }
    sandbox.app.faults.fail_after = 12  # 12 calls go well, then the API breaks
    result = run_partition(defs, MULTI_PAGE_DAY, "WS_ALPHA", raise_on_error=False)
    assert not result.success
    assert sandbox.app.statuses()[500] > 0
    for table, frame in before.items():
        pd.testing.assert_frame_equal(slice_of(database, table, MULTI_PAGE_DAY, "WS_ALPHA"), frame)


def test_malformed_payload_fails_naming_campaign_and_path(
    make_sandbox, write_workspaces, database, limiter_dir
):
    server = make_sandbox(defects={"bad_type"})
    defs = build(write_workspaces(server, ALPHA), database, limiter_dir)
    result = run_partition(defs, SMALL_DAY, "WS_ALPHA", raise_on_error=False)
    assert not result.success
    message = str(
        [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][
            0
        ].event_specific_data.error
    )
    assert "performance_stats.sent" in message and "'lots' is not a whole number" in message
    assert slice_of(database, "performance_stats", SMALL_DAY, "WS_ALPHA").empty


def test_numbers_sent_as_strings_are_coerced_losslessly(
    make_sandbox, write_workspaces, database, limiter_dir
):
    server = make_sandbox(defects={"string_numbers"})
    defs = build(write_workspaces(server, ALPHA), database, limiter_dir)
    run_partition(defs, SMALL_DAY, "WS_ALPHA")
    clean_server = make_sandbox()
    clean_db = database + ".clean.duckdb"
    run_partition(
        build(write_workspaces(clean_server, ALPHA), clean_db, limiter_dir), SMALL_DAY, "WS_ALPHA"
    )
    pd.testing.assert_frame_equal(
        slice_of(database, "performance_stats", SMALL_DAY, "WS_ALPHA"),
        slice_of(clean_db, "performance_stats", SMALL_DAY, "WS_ALPHA"),
    )


def test_missing_api_key_env_var_fails_only_that_workspace(
    sandbox, write_workspaces, database, limiter_dir
):
    path = write_workspaces(
        sandbox, ALPHA, {"id": "WS_BETA", "api_key_env": "MOESTATS_TEST_UNSET_KEY"}
    )
    defs = build(path, database, limiter_dir)
    assert run_partition(defs, SMALL_DAY, "WS_ALPHA").success
    result = run_partition(defs, SMALL_DAY, "WS_BETA", raise_on_error=False)
    assert not result.success
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert "MOESTATS_TEST_UNSET_KEY is not set" in str(failure.event_specific_data.error)


def test_raw_asset_reports_api_counters(alpha_defs):
    result = run_partition(alpha_defs, MULTI_PAGE_DAY, "WS_ALPHA")
    [raw] = [
        m for m in result.get_asset_materialization_events()
        if m.asset_key.path[-1] == "campaign_stats_raw"
    ]  # fmt: skip
    raw = raw.materialization
    meta = {k: v.value for k, v in raw.metadata.items()}
    campaigns = len(campaigns_on("WS_ALPHA", MULTI_PAGE_DAY))
    assert meta["campaigns"] == campaigns
    assert meta["api_calls"] == meta["api_pages"] == 4 * -(-campaigns // 10)
    assert meta["api_429s"] == meta["api_retries"] == 0
    assert meta["dagster/row_count"] == campaigns * 4


def test_a_long_wait_is_visible_in_the_run_log(
    make_sandbox, write_workspaces, database, limiter_dir
):
    from dagster import DagsterInstance

    server = make_sandbox(throttle_burst=1, retry_after="100000")
    defs = build(write_workspaces(server, ALPHA), database, limiter_dir, window_seconds=2.0)
    instance = DagsterInstance.ephemeral()
    result = run_partition(defs, SMALL_DAY, "WS_ALPHA", instance=instance)
    messages = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any("asking to wait 100000 s (Retry-After); waiting 4 s, the cap" in m for m in messages)


def test_an_unreachable_host_fails_the_run_in_seconds_naming_day_workspace_host_and_fix(
    sandbox, write_workspaces, database, limiter_dir
):
    import socket
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gone = {**ALPHA, "base_url": f"http://127.0.0.1:{port}"}
    defs = build(write_workspaces(sandbox, gone), database, limiter_dir)
    started = time.monotonic()
    result = run_partition(defs, SMALL_DAY, "WS_ALPHA", raise_on_error=False)
    assert not result.success and time.monotonic() - started < 30
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.error.message
    assert f"{SMALL_DAY}|WS_ALPHA: nothing was published" in message
    assert f"127.0.0.1:{port}" in message and "refused" in message and "Fix:" in message
    assert ALPHA_KEY not in message


def test_replay_rebuilds_the_tables_from_stored_raw_without_the_api(
    sandbox, write_workspaces, database, limiter_dir
):
    from dagster import DagsterInstance

    from moestats_dagster.orchestration.build import JOB_NAME
    from moestats_dagster.orchestration.lib.partitions import partition_key

    defs = build(write_workspaces(sandbox, ALPHA), database, limiter_dir)
    run_partition(defs, SMALL_DAY, "WS_ALPHA")
    before = {t: slice_of(database, t, SMALL_DAY, "WS_ALPHA") for t in NORMALIZED}
    calls = sum(sandbox.app.statuses().values())
    replay = {"ops": {"campaign_stats": {"config": {"replay": True}}}}
    result = defs.resolve_job_def(JOB_NAME).execute_in_process(
        partition_key=partition_key(SMALL_DAY, "WS_ALPHA"),
        instance=DagsterInstance.ephemeral(),
        run_config=replay,
    )
    assert result.success and sum(sandbox.app.statuses().values()) == calls  # no API call
    for table in NORMALIZED:
        after = slice_of(database, table, SMALL_DAY, "WS_ALPHA")
        pd.testing.assert_frame_equal(after, before[table])


def test_a_run_that_needs_a_deleted_data_file_names_it_and_the_repair(
    sandbox, write_workspaces, database, limiter_dir
):
    defs = build(write_workspaces(sandbox, ONE_ATTRIBUTION), database, limiter_dir)
    assert run_partition(defs, SMALL_DAY, "WS_ALPHA").success
    [victim] = Path(database, "files", "moestats", "performance_stats").glob("*.parquet")
    victim.unlink()
    # Before: the next new day's run failed with DuckDB's bare "Cannot open file".
    result = run_partition(defs, SMALL_DAY + dt.timedelta(days=2), "WS_ALPHA",
                           raise_on_error=False)  # fmt: skip
    [failure] = [e for e in result.all_events if e.is_step_failure]
    # The new day's publish does not read the lost file: it is published; the anomaly check's
    # read-back does, and says so as what it is (after the commit, the truth).
    message = failure.step_failure_data.user_failure_data.description
    day = SMALL_DAY + dt.timedelta(days=2)
    assert message.startswith(f"published {day}|WS_ALPHA; the anomaly check could not read it")
    assert str(victim) in message and "moestats.performance_stats" in message
    assert "Restore it from your backup" in message


def test_an_answer_echoing_the_credentials_fails_the_day_and_stores_nothing(
    make_sandbox, write_workspaces, database, limiter_dir
):
    server = make_sandbox(echo_auth_in_200=True)  # a debug proxy putting Authorization in a 200
    defs = build(write_workspaces(server, ONE_ATTRIBUTION), database, limiter_dir)
    instance = DagsterInstance.ephemeral()
    result = run_partition(defs, SMALL_DAY, "WS_ALPHA", instance, raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.user_failure_data.description
    assert message.startswith(f"{SMALL_DAY}|WS_ALPHA: nothing was published")
    assert "contains your API credentials" in message and "echoing them" in message
    token = base64.b64encode(f"WS_ALPHA:{ALPHA_KEY}".encode())
    stored = b"".join(p.read_bytes() for p in Path(database).rglob("*") if p.is_file())
    assert token not in stored and ALPHA_KEY.encode() not in stored
    logs = "".join(
        str(r.event_log_entry) for r in instance.get_records_for_run(result.run_id).records
    )
    assert token.decode() not in logs and ALPHA_KEY not in logs
    assert slice_of(database, "campaign_stats_raw", SMALL_DAY, "WS_ALPHA").empty
