"""Reconciliation, pure: a campaign's month as the Stats API answers the range against the sum
of its days in the lake, metric by metric, with a status for each difference.

MoEngage answers a date range with aggregates (facts.md): a TOTAL count over the range is the sum
of the days, as MoEngage holds them now. So the range is an independent total for every
campaign: a campaign the daily pages missed, a page lost, conversions that came in after the
restatement window, or a publish that never landed all show as a difference here.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from moestats_dagster.model.schemas import RECONCILIATION
from moestats_dagster.model.summary import campaign_once

PERFORMANCE = {"sent": "sent", "delivered": "delivered", "impression": "impressions",
               "click": "clicks"}  # fmt: skip
GOALS = ("conversions", "revenue")
DIFFERENT = ("lake_short", "lake_over", "api_only", "lake_only")


def totals_sql(perf: str, conv: str) -> str:
    """Per campaign over $first..$last of one $workspace, TOTAL only: sent, delivered,
    impressions and clicks (attribution ''), conversions and revenue per attribution and goal;
    each campaign counted once, as the summary views count it. Columns: campaign_id,
    attribution_type, metric, goal_key, value."""
    scope = (" AND workspace_id = $workspace AND metric_type = 'TOTAL'"
             " AND stat_date BETWEEN $first AND $last")  # fmt: skip
    once = "platform = 'all_platforms' OR NOT has_all_platforms"
    unpivot = " UNION ALL ".join(
        f"SELECT campaign_id, '' AS attribution_type, '{name}' AS metric, '' AS goal_key, "
        f"sum({column})::DOUBLE AS value FROM perf GROUP BY campaign_id"
        for column, name in PERFORMANCE.items()
    )
    goals = " UNION ALL ".join(
        f"SELECT campaign_id, attribution_type, '{m}' AS metric, goal_key, "
        f"sum({m})::DOUBLE AS value FROM conv GROUP BY ALL"
        for m in GOALS
    )
    return f"""
WITH perf AS (SELECT * FROM ({campaign_once(perf, "")}{scope}) WHERE {once}),
conv AS (SELECT * FROM ({campaign_once(conv, "attribution_type,")}{scope}) WHERE {once})
SELECT * FROM (
    {unpivot}
    UNION ALL
    {goals}
) ORDER BY ALL
"""


def totals(conn, perf: str, conv: str, workspace_id: str, first: dt.date, last: dt.date):
    """`totals_sql` run on `conn` (the lake, or frames registered as `perf` and `conv`)."""
    params = {"workspace": workspace_id, "first": first, "last": last}
    return conn.execute(totals_sql(perf, conv), params).fetchdf()


def compare(
    lake: pd.DataFrame,
    api: pd.DataFrame,
    *,
    workspace_id: str,
    start: dt.date,
    end: dt.date,
    days: int,
    days_in_lake: int,
    reconciled_at: dt.datetime,
) -> pd.DataFrame:
    """The reconciliation rows: every (campaign, attribution, metric, goal) either side has,
    with both values, the difference and its status. A revenue difference within a cent a day
    (rounding) matches; counts match only when equal."""
    keys = ["campaign_id", "attribution_type", "metric", "goal_key"]
    both = pd.merge(
        lake[keys + ["value"]].rename(columns={"value": "lake_value"}),
        api[keys + ["value"]].rename(columns={"value": "api_value"}),
        on=keys, how="outer",
    ).sort_values(keys, ignore_index=True)  # fmt: skip
    lake_value = both.lake_value.astype("float64")
    api_value = both.api_value.astype("float64")
    difference = api_value.fillna(0) - lake_value.fillna(0)
    tolerance = (both.metric == "revenue") * (0.01 * days) + 1e-9
    status = pd.Series("lake_over", index=both.index, dtype=object)
    status[difference > 0] = "lake_short"
    status[difference.abs() <= tolerance] = "match"
    status[~both.campaign_id.isin(set(api.campaign_id))] = "lake_only"
    status[~both.campaign_id.isin(set(lake.campaign_id))] = "api_only"
    compared = both.assign(lake_value=lake_value, api_value=api_value, difference=difference,
                           status=status)  # fmt: skip
    n = len(compared)
    return RECONCILIATION.frame(
        {
            "workspace_id": [workspace_id] * n,
            "period": ["month"] * n,
            "period_start": [start] * n,
            "period_end": [end] * n,
            "attribution_type": compared.attribution_type.tolist(),
            "campaign_id": compared.campaign_id.tolist(),
            "metric": compared.metric.tolist(),
            "goal_key": compared.goal_key.tolist(),
            "lake_value": _floats(compared.lake_value),
            "api_value": _floats(compared.api_value),
            "difference": _floats(compared.difference),
            "status": compared.status.tolist(),
            "days_in_lake": [days_in_lake] * n,
            "reconciled_at": [reconciled_at.astimezone(dt.UTC).replace(tzinfo=None)] * n,
        },
        n,
    )


def _floats(values: pd.Series) -> list[float | None]:
    return [None if pd.isna(v) else float(v) for v in values]


def mark_inconsistent(rows: pd.DataFrame) -> pd.DataFrame:
    """The differences as MoEngage's own: its range and its days disagree even after every day
    was fetched again."""
    out = rows.copy()
    out.loc[out.status.isin(DIFFERENT), "status"] = "api_inconsistent"
    return out


def counts(rows: pd.DataFrame) -> dict[str, int]:
    """Rows per status (every status named, 0 when none)."""
    have = rows.status.value_counts().to_dict() if len(rows) else {}
    return {status: int(have.get(status, 0)) for status in
            ("match", *DIFFERENT, "api_inconsistent")}  # fmt: skip


def first_differences(rows: pd.DataFrame, most: int = 5) -> list[str]:
    """The first differences, worded: campaign, metric (goal, attribution), lake vs API."""
    out = []
    for r in rows[rows.status != "match"].head(most).itertuples():
        what = r.metric + (f" {r.goal_key}" if r.goal_key else "") + (
            f" ({r.attribution_type})" if r.attribution_type else "")  # fmt: skip
        lake = "absent" if pd.isna(r.lake_value) else f"{r.lake_value:g}"
        api = "absent" if pd.isna(r.api_value) else f"{r.api_value:g}"
        out.append(f"{r.campaign_id} {what}: lake {lake}, API {api} ({r.status})")
    return out
