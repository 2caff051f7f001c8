"""Checks as the UI sees them: emitted per partition, catching the sandbox's injected defects."""

from __future__ import annotations

import datetime as dt

import pytest
from dagster import (
    AssetKey,
    AssetSelection,
    DagsterInstance,
    DefaultSensorStatus,
    asset,
    materialize,
)

from moestats_dagster.config import load_settings
from moestats_dagster.orchestration.build import FRESHNESS_JOB, JOB_NAME
from moestats_dagster.orchestration.defs.coverage import CHECK_NAME
from moestats_dagster.orchestration.lib.freshness import due_day, missing_check_name, missing_ranges
from moestats_dagster.orchestration.lib.partitions import partition_key
from moestats_dagster.sandbox.defects import target
from moestats_dagster.sandbox.generator import campaigns_on
from moestats_dagster_tests.conftest import ALPHA_KEY, MULTI_PAGE_DAY
from moestats_dagster_tests.helpers import build, run_partition, slice_of, stats_assets

ALPHA = {"id": "WS_ALPHA", "api_key": ALPHA_KEY}


def evaluations(result) -> dict[tuple[str, str], object]:
    return {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}


@pytest.fixture
def run_with(make_sandbox, write_workspaces, database, limiter_dir):
    def run(day=MULTI_PAGE_DAY, **faults):
        server = make_sandbox(**faults)
        defs = build(write_workspaces(server, ALPHA), database, limiter_dir)
        return run_partition(defs, day, "WS_ALPHA", raise_on_error=False)

    return run


def test_every_check_passes_on_clean_sandbox_data(run_with):
    result = run_with()
    assert result.success
    found = evaluations(result)
    assert len(found) == 24  # 23 data checks + the headline anomaly check
    assert [k for k, e in found.items() if not e.passed] == []


@pytest.mark.parametrize(
    "defect,check",
    [
        ("wrong_sent_rate", "sent_rate_matches_formula"),
        ("wrong_failure_rate", "failure_rate_matches_formula"),
        ("wrong_ctr", "ctr_matches_formula"),
        ("wrong_read_rate", "read_rate_matches_formula"),
    ],
)
def test_a_wrong_rate_from_moengage_is_flagged_as_a_warning(run_with, defect, check):
    day = next(
        d
        for d in (MULTI_PAGE_DAY + dt.timedelta(n) for n in range(60))
        if target(defect, campaigns_on("WS_ALPHA", d))
    )
    result = run_with(day=day, defects={defect})
    assert result.success  # a WARN check does not stop anything
    found = evaluations(result)
    failing = [k for k, e in found.items() if not e.passed]
    assert failing == [("performance_stats", check)]
    evaluation = found[("performance_stats", check)]
    assert evaluation.severity.value == "WARN"
    meta = {k: v.value for k, v in evaluation.metadata.items()}
    # the corrupted block is reported for both metric types of the one campaign hit
    assert meta["rows_failing"] == 2
    bad = target(defect, campaigns_on("WS_ALPHA", day)).campaign_id
    assert bad in meta["failing_rows"] and "expected" in meta["failing_rows"]


def test_performance_that_varies_by_attribution_is_flagged_on_raw(run_with):
    result = run_with(defects={"attribution_dependent_performance"})
    failing = [k for k, e in evaluations(result).items() if not e.passed]
    assert failing == [("campaign_stats_raw", "performance_identical_across_attribution_types")]


def test_schema_drift_lists_the_unknown_keys_by_name(run_with):
    found = evaluations(run_with(defects={"unknown_metrics"}))
    failing = sorted(k for k, e in found.items() if not e.passed)
    assert failing == [
        ("delivery_funnel", "no_undocumented_metric_keys"),
        ("performance_stats", "no_undocumented_metric_keys"),
    ]
    keys = found[("performance_stats", "no_undocumented_metric_keys")].metadata["undocumented_keys"]
    assert set(keys.value) == {"amp_opens"}


def test_a_failing_blocking_check_publishes_nothing_and_stops_downstream(
    make_sandbox, write_workspaces, database, limiter_dir
):
    server = make_sandbox()
    defs = build(write_workspaces(server, ALPHA), database, limiter_dir)
    run_partition(defs, MULTI_PAGE_DAY, "WS_ALPHA")
    tables = ("campaign_stats_raw", "performance_stats", "conversion_goal_stats")
    before = {t: slice_of(database, t, MULTI_PAGE_DAY, "WS_ALPHA") for t in tables}
    server.app.faults.defects = {"negative_count"}  # MoEngage now sends a count below zero
    partitions = defs.resolve_assets_def(AssetKey(["moestats", "performance_stats"])).partitions_def

    @asset(deps=[AssetKey(["moestats", "performance_stats"])], partitions_def=partitions)
    def dashboard() -> None:
        """Stands for anything built on the tables."""

    result = materialize(
        [*stats_assets(defs), dashboard],
        partition_key=partition_key(MULTI_PAGE_DAY, "WS_ALPHA"),
        resources=defs.resources,
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.error.message
    assert "performance_stats.counts_not_negative" in message and "nothing was published" in message
    assert not result.get_asset_materialization_events()  # neither the tables nor the dashboard
    for table, frame in before.items():  # the last good slices, raw included, all kept
        after = slice_of(database, table, MULTI_PAGE_DAY, "WS_ALPHA")
        assert after.equals(frame), table


def test_a_partial_day_is_never_written(make_sandbox, write_workspaces, database, limiter_dir):
    server = make_sandbox()
    defs = build(write_workspaces(server, ALPHA), database, limiter_dir)
    run_partition(defs, MULTI_PAGE_DAY, "WS_ALPHA")
    before = slice_of(database, "campaign_stats_raw", MULTI_PAGE_DAY, "WS_ALPHA")
    server.app.faults.pagination = "drop_campaign"
    result = run_partition(defs, MULTI_PAGE_DAY, "WS_ALPHA", raise_on_error=False)
    assert not result.success
    after = slice_of(database, "campaign_stats_raw", MULTI_PAGE_DAY, "WS_ALPHA")
    assert after.request_id.tolist() == before.request_id.tolist()


def _coverage(defs, instance):
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    result = defs.resolve_job_def(FRESHNESS_JOB).execute_in_process(
        instance=instance, run_config=quiet
    )
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_freshness_check_names_the_workspaces_whose_yesterday_is_missing(
    sandbox, write_workspaces, database, limiter_dir
):
    beta = {"id": "WS_BETA", "api_key": "sandbox-key-beta"}
    defs = build(write_workspaces(sandbox, ALPHA, beta), database, limiter_dir)
    settings = load_settings(write_workspaces(sandbox, ALPHA, beta))
    instance = DagsterInstance.ephemeral()
    # the day whose deadline passed last (yesterday from 09:00 UTC on, the day before until then)
    due = due_day(settings, "WS_ALPHA", dt.datetime.now(dt.UTC))
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    daily = defs.resolve_job_def(JOB_NAME)
    daily.execute_in_process(
        partition_key=partition_key(due, "WS_ALPHA"), instance=instance, run_config=quiet
    )
    check = _coverage(defs, instance)[CHECK_NAME]
    assert not check.passed and check.metadata["late_workspaces"].value == ["WS_BETA"]
    daily.execute_in_process(
        partition_key=partition_key(due, "WS_BETA"), instance=instance, run_config=quiet
    )
    assert _coverage(defs, instance)[CHECK_NAME].passed


def test_coverage_names_each_workspaces_missing_days_as_ranges_with_their_backfill(
    sandbox, write_workspaces, database, limiter_dir
):
    due = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=3)  # whatever the hour, passed
    path = write_workspaces(sandbox, ALPHA, start_date=str(due - dt.timedelta(days=6)))
    defs = build(path, database, limiter_dir)
    instance = DagsterInstance.ephemeral()
    for day in (due - dt.timedelta(days=4), due - dt.timedelta(days=2)):
        run_partition(defs, day, "WS_ALPHA", instance=instance)
    check = _coverage(defs, instance)["no_days_missing_WS_ALPHA"]
    assert not check.passed and check.severity.value == "WARN"
    ranges = check.metadata["missing_ranges"].value
    first = due - dt.timedelta(days=6)
    assert ranges[:3] == [
        f"{first}..{first + dt.timedelta(days=1)}",
        str(due - dt.timedelta(days=3)),
        f"{due - dt.timedelta(days=1)}..{ranges[2].split('..')[-1]}",
    ]
    assert (
        f"moestats backfill --workspace WS_ALPHA --from {first} --to "
        f"{first + dt.timedelta(days=1)}" in check.metadata["backfills"].value
    )


def test_coverage_ranges_are_exact():
    day = dt.date(2024, 3, 1)
    loaded = [day + dt.timedelta(days=n) for n in (0, 1, 4, 6)]
    assert missing_ranges(day, day + dt.timedelta(days=7), loaded) == [
        (dt.date(2024, 3, 3), dt.date(2024, 3, 4)),
        (dt.date(2024, 3, 6), dt.date(2024, 3, 6)),
        (dt.date(2024, 3, 8), dt.date(2024, 3, 8)),
    ]
    assert missing_check_name("WS-A", {"no_days_missing_WS_A"}) == "no_days_missing_WS_A_"


def test_stats_runs_do_not_evaluate_the_freshness_check(run_with):
    result = run_with()
    assert result.success
    names = {e.check_name for e in result.get_asset_check_evaluations()}
    assert "raw_complete_against_total_campaigns" in names
    assert CHECK_NAME not in names and not any(n.startswith("no_days_missing") for n in names)


def test_selecting_the_stats_assets_leaves_the_coverage_checks_to_their_deadline(
    sandbox, write_workspaces, database, limiter_dir
):
    """What `dagster asset materialize --select` and the UI's Materialize button run: the
    selected assets and their own checks — the coverage checks sit on another asset."""
    defs = build(write_workspaces(sandbox, ALPHA), database, limiter_dir)
    graph = defs.resolve_asset_graph()
    selected = AssetSelection.from_string('key:"moestats/campaign_stats_raw"')
    checks = {k.name for k in selected.resolve_checks(graph)}
    assert "raw_complete_against_total_campaigns" in checks
    assert CHECK_NAME not in checks and "no_days_missing_WS_ALPHA" not in checks
    sensor = defs.resolve_sensor_def("moestats_freshness_deadline")
    assert sensor.default_status == DefaultSensorStatus.RUNNING


def test_a_day_without_totals_lands_with_a_warning_not_silently(run_with):
    result = run_with(counters="none")
    assert result.success  # stored: every campaign received, once
    check = evaluations(result)[("campaign_stats_raw", "raw_complete_against_total_campaigns")]
    assert not check.passed and check.severity.value == "WARN"
    assert check.metadata["completeness_proven"].value is False
