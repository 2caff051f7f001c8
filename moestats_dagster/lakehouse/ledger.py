"""The ledger, `moestats.answers`: what each day's fetch asked of the Stats API and what answered.

What the lake knows about its own completeness lives here and only here. A day's fetch writes a
row marking the fetch itself (campaign_id '', asked_as 'day': the day was asked, and when) and a
row per campaign: listed in the day's unnamed pages, or named by id (a flow's step) and whether
it answered. The rows are published with the day's slices, in the same transaction, so the
ledger never says more or less than the tables hold. Readers:
- flow naming (`quiet_steps`): a step of a flow that sends nothing new is named for as long as
  it answers, and dropped only after answering nothing on `flow_quiet_days` days asked in a row;
- reconciliation and healing (`fetched_days`): when each day of a month was last fetched, so a
  difference that survives a re-fetch of every day is told apart from one a re-fetch heals;
- the report, `moestats doctor` and the heal sensor (`months_reconciled`): how far each
  workspace's months are proven against MoEngage, from `moestats.reconciliation`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import duckdb
import pandas as pd

from moestats_dagster.lakehouse.warehouse import table_name
from moestats_dagster.model.reconciliation import DIFFERENT
from moestats_dagster.model.schemas import ANSWERS, DAY_ROW, RECONCILIATION


def ledger_frame(
    workspace_id: str,
    stat_date: dt.date,
    fetched_at: dt.datetime,
    listed: Iterable[str],
    named: Mapping[str, bool],
    flow_of: Mapping[str, str],
) -> pd.DataFrame:
    """A day's ledger rows: the fetch itself, each campaign its unnamed pages `listed`, and each
    campaign `named` by id with whether it answered (`flow_of`: the step's flow)."""
    ids = [DAY_ROW, *sorted(set(listed) - set(named)), *sorted(named)]
    listed_count = len(ids) - 1 - len(named)
    n = len(ids)
    return ANSWERS.frame(
        {
            "workspace_id": [workspace_id] * n,
            "stat_date": [stat_date] * n,
            "campaign_id": ids,
            "asked_as": ["day"] + ["pages"] * listed_count + ["named"] * len(named),
            "answered": [True] * (1 + listed_count) + [named[c] for c in sorted(named)],
            "flow_id": [None] * (1 + listed_count) + [flow_of.get(c) for c in sorted(named)],
            "fetched_at": [fetched_at.astimezone(dt.UTC).replace(tzinfo=None)] * n,
        },
        n,
    )


def quiet_steps(
    conn: duckdb.DuckDBPyConnection, workspace_id: str, before: dt.date, days: int
) -> set[str]:
    """The campaigns that the ledger shows answering nothing on at least `days` days asked
    after the last day they answered (or ever), all before `before`."""
    sql = f"""
    WITH asked AS (
        SELECT campaign_id, stat_date, bool_or(answered) AS answered
        FROM {table_name(conn, ANSWERS)}
        WHERE workspace_id = $workspace AND stat_date < $before AND asked_as <> 'day'
        GROUP BY ALL
    ),
    last AS (
        SELECT campaign_id, max(stat_date) FILTER (WHERE answered) AS last_answered
        FROM asked GROUP BY ALL
    )
    SELECT a.campaign_id
    FROM asked a JOIN last l USING (campaign_id)
    WHERE NOT a.answered AND (l.last_answered IS NULL OR a.stat_date > l.last_answered)
    GROUP BY a.campaign_id
    HAVING count(*) >= $days
    """
    params = {"workspace": workspace_id, "before": before, "days": days}
    return {row[0] for row in conn.execute(sql, params).fetchall()}


def fetched_days(
    conn: duckdb.DuckDBPyConnection, workspace_id: str, first: dt.date, last: dt.date
) -> dict[dt.date, dt.datetime]:
    """When each day from `first` to `last` was last fetched from the API (UTC, naive), for
    the days the ledger holds."""
    sql = f"""
    SELECT stat_date, max(fetched_at) FROM {table_name(conn, ANSWERS)}
    WHERE workspace_id = $workspace AND stat_date BETWEEN $first AND $last
        AND campaign_id = $day_row
    GROUP BY stat_date
    """
    params = {"workspace": workspace_id, "first": first, "last": last, "day_row": DAY_ROW}
    return dict(conn.execute(sql, params).fetchall())


@dataclass(frozen=True)
class MonthReconciled:
    """A workspace-month's latest reconciliation with MoEngage's range totals."""

    workspace_id: str
    month: dt.date
    end: dt.date  # the last day reconciled
    reconciled_at: dt.datetime  # UTC, naive
    differing: int  # values that do not match (api_inconsistent included)
    healable: int  # of those, the ones a re-fetch may heal (not MoEngage's own)
    campaigns: int  # campaigns with a value that does not match
    statuses: str  # the statuses of those values, e.g. "lake_short"


def months_reconciled(
    conn: duckdb.DuckDBPyConnection, workspace_id: str | None = None
) -> list[MonthReconciled]:
    """Each reconciled month (of one workspace, or all), oldest first."""
    healable = ", ".join(f"'{s}'" for s in DIFFERENT)  # our own constants
    sql = f"""
    SELECT workspace_id, period_start, max(period_end), max(reconciled_at),
        count(*) FILTER (WHERE status <> 'match'),
        count(*) FILTER (WHERE status IN ({healable})),
        count(DISTINCT campaign_id) FILTER (WHERE status <> 'match'),
        coalesce(string_agg(DISTINCT status, ', ' ORDER BY status)
                 FILTER (WHERE status <> 'match'), '')
    FROM {table_name(conn, RECONCILIATION)}
    WHERE period = 'month' AND ($workspace IS NULL OR workspace_id = $workspace)
    GROUP BY workspace_id, period_start ORDER BY workspace_id, period_start
    """
    rows = conn.execute(sql, {"workspace": workspace_id}).fetchall()
    return [MonthReconciled(*row) for row in rows]
