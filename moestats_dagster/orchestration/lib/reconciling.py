"""One workspace-month reconciled: the month's range asked of the Stats API (TOTAL, every
configured attribution type, flow steps named as the daily runs name them), compared campaign by
campaign with the sum of its days in the lake, and published as the month's slice of
`moestats.reconciliation`.

Calls: one range answer per attribution type (TOTAL only): ⌈C / 10⌉ pages of the month's
campaigns each, plus ⌈S / 10⌉ per attribution for the S flow steps named — about what one day's
load costs for one metric type, against ~30 days × 2 metric types for the month's daily loads.

A month whose previous reconciliation differed and whose every day has been fetched again since
(the ledger says when) keeps its differences as `api_inconsistent`: MoEngage's range and its own
days disagree, and re-fetching again would change nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pandas as pd
from dagster import AssetExecutionContext, Failure

from moestats_dagster.config import Settings
from moestats_dagster.lakehouse.engine import frames_connection
from moestats_dagster.lakehouse.ledger import fetched_days
from moestats_dagster.lakehouse.warehouse import read_slice, replace_slices, table_name
from moestats_dagster.model import checks, reconciliation
from moestats_dagster.model.schemas import CONVERSION_GOAL_STATS, PERFORMANCE_STATS, RECONCILIATION
from moestats_dagster.orchestration.lib.flow_sources import run_flows
from moestats_dagster.orchestration.lib.resources import MoEngageResource, WarehouseResource
from moestats_dagster.orchestration.lib.stats_day import fetch_stats, normalized

MONTH = "month"


@dataclass
class Reconciled:
    """A month's reconciliation: its rows, as published, and what asking cost."""

    workspace_id: str
    start: dt.date
    end: dt.date
    rows: pd.DataFrame
    calls: int
    api_429s: int

    @property
    def counts(self) -> dict[str, int]:
        return reconciliation.counts(self.rows)

    @property
    def where(self) -> str:
        return f"month {self.start:%Y-%m}|{self.workspace_id}"

    def outcome(self) -> checks.Outcome:
        """The check: WARN with the counts and the first differences; ERROR when a campaign the
        API answers is missing from the lake."""
        counts = self.counts
        different = sum(v for k, v in counts.items() if k != "match")
        campaigns = self.rows.loc[self.rows.status != "match", "campaign_id"].nunique()
        summary = (
            f"{self.where}: every campaign matches MoEngage's range ({counts['match']} values)"
            if not different
            else f"{self.where}: {different} of {len(self.rows)} values differ, in {campaigns} "
            f"campaigns ({', '.join(f'{k} {v}' for k, v in counts.items() if v)})"
            + (
                "; MoEngage's range and its own days disagree after every day was fetched "
                "again (api_inconsistent): not re-fetched again"
                if counts["api_inconsistent"]
                else "; the month's days are re-fetched by the heal sensor"
            )  # fmt: skip
        )
        return checks.Outcome(
            passed=not different,
            metadata={
                "summary": summary,
                **counts,
                "first_differences": reconciliation.first_differences(self.rows),
            },  # fmt: skip
            severity="ERROR" if counts["api_only"] else None,
        )


def month_range(settings: Settings, workspace_id: str, start: dt.date, end: dt.date):
    """The month's days to reconcile: from its first (or start_date) to its last or yesterday."""
    yesterday = dt.datetime.now(ZoneInfo(settings.zone(workspace_id))).date() - dt.timedelta(1)
    return max(start, settings.start_date), min(end, yesterday)


def reconcile_month(
    context: AssetExecutionContext,
    moengage: MoEngageResource,
    warehouse: WarehouseResource,
    workspace_id: str,
    month: dt.date,
    start: dt.date,
    end: dt.date,
) -> Reconciled:
    """Reconcile `start`..`end` (the days of the calendar month `month` that have ended, from
    start_date on) of a workspace: the month's slice of moestats.reconciliation."""
    ws = moengage.workspace(workspace_id)
    where = f"month {month:%Y-%m}|{workspace_id}"
    at = dt.datetime.now(dt.UTC)
    with warehouse.get_connection() as conn:
        flows = run_flows(context, moengage, warehouse, conn, workspace_id, where, start)
        lake = reconciliation.totals(conn, table_name(conn, PERFORMANCE_STATS),
                                     table_name(conn, CONVERSION_GOAL_STATS), workspace_id,
                                     start, end)  # fmt: skip
        fetched = fetched_days(conn, workspace_id, start, end)
        previous = read_slice(conn, RECONCILIATION, workspace_id=workspace_id,
                              period=(MONTH, month))  # fmt: skip
    raw, _, cost, _ = fetch_stats(context, moengage, workspace_id, start,
                                  end if end > start else None, flows, metric_types=("TOTAL",))  # fmt: skip
    frames = normalized(raw, where, workspace_id, start, ws.attribution_types)
    on_frames = frames_connection()
    try:
        on_frames.register("perf", frames[PERFORMANCE_STATS.name])
        on_frames.register("conv", frames[CONVERSION_GOAL_STATS.name])
        api = reconciliation.totals(on_frames, "perf", "conv", workspace_id, start, start)
    finally:
        on_frames.close()
    days = (end - start).days + 1
    rows = reconciliation.compare(lake, api, workspace_id=workspace_id, start=month, end=end,
                                  days=days, days_in_lake=len(fetched), reconciled_at=at)  # fmt: skip
    if _refetched_since(previous, fetched, start, end):
        rows = reconciliation.mark_inconsistent(rows)
    with warehouse.get_connection() as conn:
        replace_slices(conn, {RECONCILIATION.name: rows}, workspace_id=workspace_id,
                       period=(MONTH, month), retry_seconds=warehouse.retry_seconds)  # fmt: skip
    return Reconciled(workspace_id, month, end, rows, cost["api_calls"], cost["api_429s"])


def _refetched_since(
    previous: pd.DataFrame, fetched: dict[dt.date, dt.datetime], start: dt.date, end: dt.date
) -> bool:
    """Did the previous reconciliation differ, and has every day been fetched again since (or
    was it already MoEngage's own difference)?"""
    differed = previous[previous.status != "match"]
    if not len(differed):
        return False
    if (differed.status == "api_inconsistent").any():
        return True
    since = pd.Timestamp(differed.reconciled_at.max()).to_pydatetime()
    days = [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]
    return all(d in fetched and fetched[d] > since for d in days)


def not_over(settings: Settings, workspace_id: str, start: dt.date) -> Failure:
    return Failure(
        description=f"month {start:%Y-%m}|{workspace_id}: no day of this month has ended yet in "
        f"{settings.zone(workspace_id)} (or it is before start_date); it is reconciled once its "
        "first day is over and loaded",
        allow_retries=False,
    )
