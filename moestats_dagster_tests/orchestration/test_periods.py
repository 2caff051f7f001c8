"""Weeks and months fetched as ranges: totals add up, reach does not, and automation refreshes
the running and the previous period after new stats."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from dagster import (
    AssetKey,
    AssetSelection,
    DagsterInstance,
    evaluate_automation_conditions,
    materialize,
)

from moestats_dagster.lakehouse.warehouse import connection
from moestats_dagster.orchestration.defs.periods import period_bounds
from moestats_dagster_tests.conftest import ALPHA_KEY
from moestats_dagster_tests.helpers import build, run_partition

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
SMALL = {"metric_types": ["TOTAL", "UNIQUE"], "attribution_types": ["VIEW_THROUGH"]}
WEEK = dt.date(2024, 12, 2)  # a Monday
BLOCK = ["campaign_id", "entry_index", "platform", "locale", "variation"]
COUNTS = ["sent", "delivered", "click", "impression", "attempted"]


def _period(defs, name: str, key: str, instance=None):
    [period_asset] = [a for a in defs.assets if any(k.path[-1] == name for k in a.keys)]
    return materialize(
        [period_asset],
        partition_key=key,
        resources=defs.resources,
        instance=instance or DagsterInstance.ephemeral(),
        run_config=QUIET,
    )


def _sql(database, sql, *params) -> pd.DataFrame:
    with connection(database) as conn:
        frame = conn.execute(sql, list(params)).fetchdf()
    for column in ("period_start", "period_end", "month"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column]).dt.date
    return frame


def test_a_week_asked_as_a_range_sums_totals_but_not_unique_counts(
    sandbox, write_workspaces, database, limiter_dir
):
    path = write_workspaces(sandbox, {"id": "WS_ALPHA", "api_key": ALPHA_KEY, **SMALL},
                            periods=["week", "month"])  # fmt: skip
    defs = build(path, database, limiter_dir)
    days = [WEEK + dt.timedelta(days=n) for n in range(7)]
    instance = DagsterInstance.ephemeral()
    for day in days:
        run_partition(defs, day, "WS_ALPHA", instance=instance)
    result = _period(defs, "campaign_weekly_stats", f"{WEEK}|WS_ALPHA", instance)
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["period_end"].value == str(WEEK + dt.timedelta(days=6))
    assert metadata["complete"].value is True

    summed = _sql(
        database,
        f"SELECT metric_type, {', '.join(BLOCK)}, count(*) AS days_ran, "
        + ", ".join(f"sum({c}) AS {c}, max({c}) AS max_{c}" for c in COUNTS)
        + " FROM moestats.performance_stats WHERE workspace_id = 'WS_ALPHA' "
        "AND stat_date BETWEEN ? AND ? GROUP BY ALL",
        days[0], days[-1],
    )  # fmt: skip
    week = _sql(
        database,
        f"SELECT metric_type, {', '.join(BLOCK)}, {', '.join(COUNTS)}, period_start, period_end "
        "FROM moestats.campaign_period_stats WHERE period = 'week' AND workspace_id = 'WS_ALPHA'",
    )
    assert (week.period_start == WEEK).all() and len(week)
    both = week.merge(summed, on=["metric_type", *BLOCK], suffixes=("", "_days"))
    assert len(both) == len(week) == len(summed)  # the same campaigns and blocks
    total, unique = both[both.metric_type == "TOTAL"], both[both.metric_type == "UNIQUE"]
    for column in COUNTS:
        t = total.dropna(subset=[column])
        assert (t[column] == t[f"{column}_days"]).all(), column  # TOTAL: the sum of the days
        u = unique.dropna(subset=[column])
        assert (u[column] <= u[f"{column}_days"]).all(), column  # UNIQUE: never above the sum
        assert (u[column] >= u[f"max_{column}"]).all(), column  # ... nor below the best day
    several = unique[(unique.days_ran > 1) & (unique.sent_days > unique.max_sent)]
    assert len(several) and (several.sent < several.sent_days).all()  # returning users once
    pair = unique.merge(total, on=BLOCK, suffixes=("_u", "_t"))
    assert (pair.sent_u.fillna(0) <= pair.sent_t.fillna(0)).all()  # never above TOTAL


def test_the_monthly_summary_reach_is_the_months_unique_and_the_totals_are_the_months(
    sandbox, write_workspaces, database, limiter_dir
):
    path = write_workspaces(sandbox, {"id": "WS_GAMMA", "api_key": "sandbox-key-gamma", **SMALL})
    defs = build(path, database, limiter_dir)
    result = _period(defs, "campaign_monthly_stats", "2024-11-01|WS_GAMMA")
    assert all(e.passed for e in result.get_asset_check_evaluations())
    summary = _sql(
        database, "SELECT * FROM moestats.campaign_monthly_summary WHERE workspace_id = 'WS_GAMMA'"
    )
    assert len(summary) and (summary.month == dt.date(2024, 11, 1)).all()
    assert (summary.period_end == dt.date(2024, 11, 30)).all()
    unique = _sql(
        database,
        "SELECT campaign_id, sum(sent) AS users FROM moestats.campaign_period_stats "
        "WHERE metric_type = 'UNIQUE' AND period = 'month' AND locale = 'all_locales' "
        "AND variation = 'all_variations' AND platform = 'all_platforms' GROUP BY ALL",
    )
    merged = summary.merge(unique, on="campaign_id")
    assert merged.reach.notna().any()
    assert (merged.reach.fillna(-1) == merged.users.fillna(-1)).all()
    assert (summary.reach.fillna(0) <= summary.sent.fillna(0)).all()
    assert summary.conversions_view_through.notna().any()


def test_automation_refreshes_the_running_and_previous_month_after_new_stats(
    sandbox, write_workspaces, database, limiter_dir
):
    today = dt.datetime.now(dt.UTC).date()
    yesterday = today - dt.timedelta(days=1)
    old = yesterday.replace(day=1) - dt.timedelta(days=70)  # two months before: left alone
    path = write_workspaces(sandbox, {"id": "WS_ALPHA", "api_key": ALPHA_KEY, **SMALL},
                            start_date=str(old.replace(day=1)))  # fmt: skip
    defs = build(path, database, limiter_dir)
    instance = DagsterInstance.ephemeral()
    monthly = AssetSelection.assets(AssetKey(["moestats", "campaign_monthly_stats"]))
    first = evaluate_automation_conditions(defs, instance, asset_selection=monthly)
    assert first.total_requested == 0  # nothing new yet
    for day in (yesterday, old):
        run_partition(defs, day, "WS_ALPHA", instance=instance)
    again = evaluate_automation_conditions(
        defs, instance, asset_selection=monthly, cursor=first.cursor
    )
    requested = {
        str(key) for key in again.get_requested_partitions(
            AssetKey(["moestats", "campaign_monthly_stats"]))
    }  # fmt: skip
    assert requested == {f"{yesterday.replace(day=1)}|WS_ALPHA"}
    assert period_bounds("month", dt.date(2024, 2, 1)) == (
        dt.date(2024, 2, 1),
        dt.date(2024, 2, 29),
    )


def test_the_running_month_depends_only_on_days_that_have_partitions(
    sandbox, write_workspaces, database, limiter_dir
):
    """Dagster's backfills (which run automation's requests) refuse a partition whose parents
    do not exist: the running month's later days must not be required."""
    today = dt.datetime.now(dt.UTC).date()
    path = write_workspaces(sandbox, {"id": "WS_ALPHA", "api_key": ALPHA_KEY},
                            start_date=str(today.replace(day=1) - dt.timedelta(days=40)))  # fmt: skip
    defs = build(path, database, limiter_dir)
    graph = defs.resolve_asset_graph()
    monthly, raw = (
        AssetKey(["moestats", "campaign_monthly_stats"]),
        AssetKey(["moestats", "campaign_stats_raw"]),
    )
    node = graph.get(monthly)
    mapping = node.assets_def.get_partition_mapping(raw)
    running = node.partitions_def.subset_with_partition_keys([f"{today.replace(day=1)}|WS_ALPHA"])
    mapped = mapping.get_upstream_mapped_partitions_result_for_partitions(
        running, node.partitions_def, graph.get(raw).partitions_def
    )
    assert mapped.required_but_nonexistent_subset.is_empty
    days = {k.split("|")[0] for k in mapped.partitions_subset.get_partition_keys()}
    assert str(today - dt.timedelta(days=1)) in days or today.day == 1
