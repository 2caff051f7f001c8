"""Weeks and months, fetched from the Stats API for the whole range: `moestats.campaign_period_stats`
and `moestats.campaign_period_goal_stats`, one asset per configured period kind.

UNIQUE counts (reach, users clicked, converted users) of a period are distinct users over the
period, which no sum of daily UNIQUE counts gives: a user reached on 20 days counts 20 times in
the sum. So each period is asked for as one range (an ISO week, or a calendar month, within the
API's 30-day limit), never added up from days. Partitioned period x workspace, so Dagster shows
and backfills periods; the running and the previous period are refreshed by automation after new
stats of their days land (the days keep coming in, and restatement changes them again).

Performance and conversion goals are kept; the delivery funnel and failure breakdown are day
tables only (their counts add up over days). The range's raw answers are not stored: the period
is re-fetched whole on every refresh, and the day tables keep every raw answer.
"""

import datetime as dt
import warnings
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
from dagster import (
    AssetDep,
    AssetExecutionContext,
    AutomationCondition,
    BetaWarning,
    DimensionPartitionMapping,
    Failure,
    IdentityPartitionMapping,
    MaterializeResult,
    MonthlyPartitionsDefinition,
    MultiPartitionMapping,
    MultiPartitionsDefinition,
    StaticPartitionsDefinition,
    TimeWindowPartitionMapping,
    WeeklyPartitionsDefinition,
    asset,
)

from moestats_dagster.config import Settings
from moestats_dagster.lakehouse.warehouse import replace_slices, replace_views, table_name
from moestats_dagster.model.schemas import (
    CAMPAIGN_MONTHLY_SUMMARY,
    CAMPAIGN_PERIOD_GOAL_STATS,
    CAMPAIGN_PERIOD_STATS,
    CAMPAIGN_STATS_RAW,
    CAMPAIGNS,
    CONVERSION_GOAL_STATS,
    PERFORMANCE_STATS,
)
from moestats_dagster.model.summary import monthly_sql
from moestats_dagster.orchestration.lib.check_specs import (
    refuse_if_blocking,
    result,
    specs,
    table_checks,
)
from moestats_dagster.orchestration.lib.conditions import REFRESH_AFTER_STATS
from moestats_dagster.orchestration.lib.flow_sources import run_flows
from moestats_dagster.orchestration.lib.metadata import (
    DEFAULT_NAMING,
    OWNERS,
    Naming,
    preview,
    static_metadata,
)
from moestats_dagster.orchestration.lib.metadata import PERIOD_ASSET_NAMES as ASSET_NAMES
from moestats_dagster.orchestration.lib.partitions import ONE_PER_RUN, WORKSPACE, partition_timezone
from moestats_dagster.orchestration.lib.resources import MoEngageResource, WarehouseResource
from moestats_dagster.orchestration.lib.retries import retried_only_if_curable
from moestats_dagster.orchestration.lib.stats_day import fetch_stats, normalized

PERIOD = "period"  # the time dimension of the period partitions
# The running period and the one before: a lookback longer than any one period, shorter than
# any two (months: 31 < 45 < 59 days; ISO weeks: 7 < 10 < 14 days).
REFRESHED = {"week": dt.timedelta(days=10), "month": dt.timedelta(days=45)}


def period_bounds(kind: str, start: dt.date) -> tuple[dt.date, dt.date]:
    """First and last day of the week (Monday to Sunday) or calendar month starting `start`."""
    if kind == "week":
        return start, start + dt.timedelta(days=6)
    following = (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return start, following - dt.timedelta(days=1)


def period_start_of(kind: str, day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday()) if kind == "week" else day.replace(day=1)


def build_period_partitions(settings: Settings, kind: str) -> MultiPartitionsDefinition:
    """Period x workspace; keys read `YYYY-MM-DD|WORKSPACE_ID`, the date the period's first day.
    The running period is a partition too (end_offset=1): it is refreshed as its days land."""
    first = period_start_of(kind, settings.start_date).isoformat()
    zone = partition_timezone(settings)
    periods = (
        WeeklyPartitionsDefinition(start_date=first, day_offset=1, timezone=zone, end_offset=1)
        if kind == "week"
        else MonthlyPartitionsDefinition(start_date=first, timezone=zone, end_offset=1)
    )
    return MultiPartitionsDefinition(
        {
            PERIOD: periods,
            WORKSPACE: StaticPartitionsDefinition([ws.id for ws in settings.workspaces]),
        }
    )


def _from_days() -> MultiPartitionMapping:
    """A period depends on its days (of the same workspace)."""
    with warnings.catch_warnings():  # "beta" notices; the mapping is what the lineage means
        warnings.simplefilter("ignore", BetaWarning)
        return MultiPartitionMapping(
            {
                # the running period's days that have not ended yet have no partitions
                "date": DimensionPartitionMapping(
                    PERIOD, TimeWindowPartitionMapping(allow_nonexistent_upstream_partitions=True)
                ),
                WORKSPACE: DimensionPartitionMapping(WORKSPACE, IdentityPartitionMapping()),
            }
        )


def over_period(
    frame: pd.DataFrame, table, kind: str, start: dt.date, end: dt.date
) -> pd.DataFrame:
    """A day table's frame (its stat_date the period's first day) as a period table's."""
    out = frame.drop(columns=["stat_date"])
    n = len(out)
    out["period"] = pd.array([kind] * n, dtype=pd.ArrowDtype(pa.string()))
    out["period_start"] = pd.array([start] * n, dtype=pd.ArrowDtype(pa.date32()))
    out["period_end"] = pd.array([end] * n, dtype=pd.ArrowDtype(pa.date32()))
    return out[table.names]


def build_period_asset(settings: Settings, kind: str, naming: Naming = DEFAULT_NAMING):
    key = naming.key_of(ASSET_NAMES[kind])
    partitions = build_period_partitions(settings, kind)
    adjective = ASSET_NAMES[kind].split("_")[1]

    @asset(
        key=key,
        partitions_def=partitions,
        deps=[AssetDep(naming.key(CAMPAIGN_STATS_RAW), partition_mapping=_from_days())],
        group_name=naming.group,
        kinds={"moengage", "duckdb", "pandas"},
        owners=OWNERS,
        metadata={
            **static_metadata(CAMPAIGN_PERIOD_STATS),
            "also_writes": f"duckdb.{CAMPAIGN_PERIOD_GOAL_STATS.qualified}",
        },
        check_specs=[
            *specs(key, CAMPAIGN_PERIOD_STATS),
        ],
        automation_condition=(
            REFRESH_AFTER_STATS & AutomationCondition.in_latest_time_window(REFRESHED[kind])
        ).with_label(f"the running and the previous {kind}, after new stats of their days"),
        backfill_policy=ONE_PER_RUN,
        required_resource_keys={naming.moengage, naming.warehouse},
        description=(
            f"Every campaign's stats for a whole {'ISO week' if kind == 'week' else 'calendar month'}"
            ", asked of the API as one range: TOTAL counts equal the sum of the days, UNIQUE "
            f"counts are distinct users over the {kind} (the {adjective} reach), which no sum of "
            f"days gives. Rows of {CAMPAIGN_PERIOD_STATS.qualified} (performance) and "
            f"{CAMPAIGN_PERIOD_GOAL_STATS.qualified} (conversion goals) with period = '{kind}'. "
            "The running period ends at yesterday and is refreshed as its days land."
        ),
    )
    def period_stats(context: AssetExecutionContext):
        moengage: MoEngageResource = getattr(context.resources, naming.moengage)
        warehouse: WarehouseResource = getattr(context.resources, naming.warehouse)
        keys = context.partition_key.keys_by_dimension
        workspace_id = keys[WORKSPACE]
        start, last = period_bounds(kind, dt.date.fromisoformat(keys[PERIOD]))
        yesterday = dt.datetime.now(ZoneInfo(settings.zone(workspace_id))).date() - dt.timedelta(1)
        end = min(last, yesterday)
        where = f"{kind} {start}|{workspace_id}"
        if end < start:
            raise Failure(
                description=f"{where}: no day of this {kind} has ended yet in "
                f"{settings.zone(workspace_id)}; it is fetched once its first day is over"
            )
        ws = moengage.workspace(workspace_id)
        with retried_only_if_curable(context, where):
            with warehouse.get_connection() as conn:  # flow campaigns are named, as for days
                flows = run_flows(context, moengage, warehouse, conn, workspace_id, where, start)
            raw, _, fetched, _ = fetch_stats(context, moengage, workspace_id, start, end, flows)
            frames = normalized(raw, where, workspace_id, start, ws.attribution_types)
            period = {
                CAMPAIGN_PERIOD_STATS.name: over_period(
                    frames[PERFORMANCE_STATS.name], CAMPAIGN_PERIOD_STATS, kind, start, end
                ),
                CAMPAIGN_PERIOD_GOAL_STATS.name: over_period(
                    frames[CONVERSION_GOAL_STATS.name], CAMPAIGN_PERIOD_GOAL_STATS, kind, start, end
                ),
            }
            perf = period[CAMPAIGN_PERIOD_STATS.name]
            outcomes = [(c, c.run(perf)) for c in table_checks(CAMPAIGN_PERIOD_STATS)]
            refuse_if_blocking(where, f"{kind} stats", {key: outcomes})
            with warehouse.get_connection() as conn:
                replace_slices(
                    conn, period, workspace_id=workspace_id, period=(kind, start),
                    retry_seconds=warehouse.retry_seconds,
                )  # fmt: skip
                names = {t.name: table_name(conn, t) for t in (
                    CAMPAIGN_PERIOD_STATS, CAMPAIGN_PERIOD_GOAL_STATS, CAMPAIGNS,
                    CAMPAIGN_MONTHLY_SUMMARY)}  # fmt: skip
                replace_views(conn, [monthly_sql(*names.values())], warehouse.retry_seconds)
        context.log.info(
            f"{where}: {start}..{end}, {len(perf)} performance and "
            f"{len(period[CAMPAIGN_PERIOD_GOAL_STATS.name])} goal rows from "
            f"{fetched['api_calls']} calls"
        )
        return MaterializeResult(
            metadata={
                "dagster/row_count": len(perf),
                "period_start": start.isoformat(),
                "period_end": end.isoformat(),
                "complete": end == last,
                "goal_rows": len(period[CAMPAIGN_PERIOD_GOAL_STATS.name]),
                **{k: v for k, v in fetched.items() if k != "total_campaigns"},
                "preview": preview(perf),
            },
            check_results=[result(key, c, o) for c, o in outcomes],
        )

    return period_stats


def build_period_assets(settings: Settings, naming: Naming = DEFAULT_NAMING) -> list:
    return [build_period_asset(settings, kind, naming) for kind in ("week", "month")
            if kind in settings.periods]  # fmt: skip
