"""A backfill's run of several days of one workspace (the stats asset's backfill policy): each
day fetched, audited, published, materialized and checked as its own partition, and failing on
its own. Also: a subset of the five stats assets selected."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from dagster import AssetCheckKey, AssetKey, DagsterInstance, materialize

from moestats_dagster.lakehouse import maintenance
from moestats_dagster.lakehouse.warehouse import connection
from moestats_dagster.model.schemas import NORMALIZED_TABLES
from moestats_dagster.orchestration.build import JOB_NAME
from moestats_dagster.orchestration.lib.partitions import partition_key
from moestats_dagster.sandbox.generator import campaigns_on
from moestats_dagster_tests.conftest import ALPHA_KEY, EMPTY_DAY, SMALL_DAY
from moestats_dagster_tests.helpers import build, run_partition, slice_of, stats_assets

ALPHA = {"id": "WS_ALPHA", "api_key": ALPHA_KEY, "metric_types": ["TOTAL"],
         "attribution_types": ["IN_SESSION"]}  # fmt: skip
RAW = AssetKey(["moestats", "campaign_stats_raw"])
PERF = AssetKey(["moestats", "performance_stats"])


def range_tags(first: dt.date, last: dt.date, workspace: str) -> dict[str, str]:
    """The tags a backfill's run of several partitions carries (as the daemon sets them)."""
    return {
        "dagster/asset_partition_range_start": partition_key(first, workspace),
        "dagster/asset_partition_range_end": partition_key(last, workspace),
    }


def _first_day_fails(make_sandbox, write_workspaces, database, limiter_dir):
    """A run of three days whose first call's answer is not JSON: the first day fails, the two
    after it load. (result, days, instance)"""
    server = make_sandbox(malformed=1)
    defs = build(write_workspaces(server, ALPHA), database, limiter_dir, max_retries=0)
    days = [SMALL_DAY + dt.timedelta(days=n) for n in range(3)]
    instance = DagsterInstance.ephemeral()
    result = materialize(stats_assets(defs), resources=defs.resources, instance=instance,
                         tags=range_tags(days[0], days[-1], "WS_ALPHA"),
                         raise_on_error=False)  # fmt: skip
    return result, days, instance


def test_a_run_of_several_days_publishes_materializes_and_checks_each_day(
    make_sandbox, write_workspaces, database, limiter_dir
):
    result, days, instance = _first_day_fails(make_sandbox, write_workspaces, database,
                                              limiter_dir)  # fmt: skip
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.step_failure_data.user_failure_data.description
    assert message.startswith("1 of 3 days failed (2 published and materialized)")
    assert partition_key(days[0], "WS_ALPHA") in message
    loaded = {partition_key(d, "WS_ALPHA") for d in days[1:]}
    assert instance.get_materialized_partitions(RAW) == loaded
    assert instance.get_materialized_partitions(PERF) == loaded
    for day in days[1:]:
        raw = slice_of(database, "campaign_stats_raw", day, "WS_ALPHA")
        assert len(raw) == len(campaigns_on("WS_ALPHA", day))
    assert slice_of(database, "campaign_stats_raw", days[0], "WS_ALPHA").empty
    history = instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(RAW, "raw_complete_against_total_campaigns"), limit=10
    )
    checked = {r.event.dagster_event.event_specific_data.partition for r in history
               if r.event and r.event.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"}  # fmt: skip
    assert checked == loaded
    events = instance.all_logs(result.run_id)
    materialized = [e for e in events if e.dagster_event_type
                    and e.dagster_event_type.value == "ASSET_MATERIALIZATION"]  # fmt: skip
    assert len(materialized) == 2 * 5  # the five assets of each loaded day, once


def test_a_job_backfill_run_loads_every_day_of_its_range(
    sandbox, write_workspaces, database, limiter_dir
):
    """A backfill launched from the job's page (`moestats backfill`, the demo) tags its runs
    with the range and the first key's dimension tags; Dagster then offers the step only the
    first key (dagster-io/dagster#28861). Every day of the range must still load."""
    defs = build(write_workspaces(sandbox, ALPHA), database, limiter_dir)
    days = [SMALL_DAY + dt.timedelta(days=n) for n in range(3)]
    tags = {**range_tags(days[0], days[-1], "WS_ALPHA"),
            "dagster/partition/date": days[0].isoformat(),
            "dagster/partition/workspace": "WS_ALPHA"}  # fmt: skip
    instance = DagsterInstance.ephemeral()
    result = defs.resolve_job_def(JOB_NAME).execute_in_process(instance=instance, tags=tags)
    assert result.success
    assert instance.get_materialized_partitions(RAW) == {partition_key(d, "WS_ALPHA") for d in days}
    for day in days:
        raw = slice_of(database, "campaign_stats_raw", day, "WS_ALPHA")
        assert len(raw) == len(campaigns_on("WS_ALPHA", day))


def test_one_of_the_five_stats_assets_selected_still_publishes_all_five(
    sandbox, write_workspaces, database, limiter_dir
):
    defs = build(write_workspaces(sandbox, ALPHA), database, limiter_dir)
    [stats] = stats_assets(defs)
    instance = DagsterInstance.ephemeral()
    result = materialize([stats], selection=[RAW], resources=defs.resources, instance=instance,
                         partition_key=partition_key(SMALL_DAY, "WS_ALPHA"))  # fmt: skip
    assert result.success
    key = partition_key(SMALL_DAY, "WS_ALPHA")
    assert instance.get_materialized_partitions(PERF) == {key}  # published, and said so
    assert len(slice_of(database, "performance_stats", SMALL_DAY, "WS_ALPHA"))


def test_a_run_of_several_days_judges_each_day_against_the_days_before_it_in_the_run(
    sandbox, write_workspaces, database, limiter_dir
):
    # The anomaly check needs 14 loaded days: the 15th day of a run has them only when the days
    # the run published before it count (they are asked of the instance once per run).
    defs = build(write_workspaces(sandbox, ALPHA), database, limiter_dir)
    days = [SMALL_DAY + dt.timedelta(days=n) for n in range(15)]
    instance = DagsterInstance.ephemeral()
    result = materialize(stats_assets(defs), resources=defs.resources, instance=instance,
                         tags=range_tags(days[0], days[-1], "WS_ALPHA"))  # fmt: skip
    assert result.success
    history = instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(PERF, "headline_numbers_within_usual_range"), limit=20
    )
    evaluations = [r.event.dagster_event.event_specific_data for r in history
                   if r.event and r.event.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"]  # fmt: skip
    summaries = {e.partition: e.metadata["summary"].value for e in evaluations}
    assert summaries[partition_key(days[0], "WS_ALPHA")].startswith("not judged: 0 of")
    assert summaries[partition_key(days[13], "WS_ALPHA")].startswith("not judged: 13 of")
    assert not summaries[partition_key(days[14], "WS_ALPHA")].startswith("not judged")
    # The run took each day's numbers from the frames it published, having read the lake once:
    # the 15th day loaded alone (numbers read from the lake) is judged on the very same figures.
    last = next(e for e in evaluations if e.partition == partition_key(days[14], "WS_ALPHA"))
    alone = run_partition(defs, days[14], "WS_ALPHA", instance=instance)
    (again,) = [e for e in alone.get_asset_check_evaluations()
                if e.check_name == "headline_numbers_within_usual_range"]  # fmt: skip
    assert again.metadata == last.metadata
    assert again.passed == last.passed


def _lake_contents(database: str, days: list[dt.date]) -> dict:
    """Every table's slices of `days`, rows sorted: what a reader of the lake gets."""
    out = {}
    for table in ("campaign_stats_raw", *(t.name for t in NORMALIZED_TABLES)):
        for day in days:
            frame = slice_of(database, table, day, "WS_ALPHA").drop(columns=["fetched_at", "request_id"],
                                                                    errors="ignore")  # fmt: skip
            out[(table, day)] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    return out


def _load(path, lake: str, limiter_dir: str, runs: list[list[dt.date]]) -> list[str]:
    """Runs of several days of WS_ALPHA into `lake`; what their logs said."""
    defs, instance, said = build(path, lake, limiter_dir), DagsterInstance.ephemeral(), []
    for days in runs:
        result = materialize(stats_assets(defs), resources=defs.resources, instance=instance,
                             tags=range_tags(days[0], days[-1], "WS_ALPHA"))  # fmt: skip
        assert result.success
        said += [e.message for e in instance.all_logs(result.run_id)]
    return said


def test_a_long_load_s_runs_merge_the_lake_s_small_files_and_change_no_row(
    sandbox, write_workspaces, database, limiter_dir, tmp_path, monkeypatch
):
    # Five new files a day: past MERGE_PAST_FILES in the lake, a run of several days merges them
    # when its days are published. Readers see the same rows as in a lake never merged.
    path = write_workspaces(sandbox, ALPHA)
    days = [SMALL_DAY + dt.timedelta(days=n) for n in range(6)]
    unmerged_lake = str(tmp_path / "unmerged")
    said = _load(path, unmerged_lake, limiter_dir, [days])  # 30 files, fewer than 100
    assert not any("merged the lake's small files" in m for m in said)
    monkeypatch.setattr(maintenance, "MERGE_PAST_FILES", 12)
    said = _load(path, database, limiter_dir, [days[:3], days[3:]])
    # the first run's 15 files are past 12: merged; the second's merge takes its own 15 along
    assert sum("merged the lake's small files" in m for m in said) == 2
    sizes = {}
    for lake in (database, unmerged_lake):
        with connection(lake) as conn:
            sizes[lake] = maintenance.lake_size(conn).files
    assert sizes[database] < 15 < sizes[unmerged_lake]
    merged, unmerged = _lake_contents(database, days), _lake_contents(unmerged_lake, days)
    for key, frame in merged.items():
        assert len(frame) > 0 or key[1] == EMPTY_DAY, key  # a day without campaigns
        pd.testing.assert_frame_equal(frame, unmerged[key], check_dtype=False)


def test_moestats_backfill_names_the_days_that_failed_not_only_the_run(
    make_sandbox, write_workspaces, database, limiter_dir
):
    from moestats_dagster.operations.launch import failed_days

    result, days, instance = _first_day_fails(make_sandbox, write_workspaces, database,
                                              limiter_dir)  # fmt: skip
    said = failed_days(instance, result.dagster_run)
    assert said.startswith(f"{days[0]}|WS_ALPHA (run {result.run_id[:8]}): 1 of 3 days failed")
    assert f"{days[1]}|WS_ALPHA" not in said.split(":")[0]  # the published days are not named
