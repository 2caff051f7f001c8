"""The anomaly check's numbers: a workspace's headline figures per day (sent, delivered,
conversions, revenue, as the summary counts them) and the day judged against its history."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import duckdb
import pandas as pd

from moestats_dagster.lakehouse.engine import frames_connection
from moestats_dagster.lakehouse.warehouse import table_name
from moestats_dagster.model import anomalies, checks
from moestats_dagster.model.schemas import CONVERSION_GOAL_STATS, PERFORMANCE_STATS
from moestats_dagster.model.summary import headline_sql
from moestats_dagster.orchestration.lib.resources import MoEngageResource


class Headlines:
    """One workspace's headline numbers per day (sent, delivered, conversions, revenue, as the
    summary counts them), for the anomaly check. A run of several days reads its window from the
    lake once and then takes each day it publishes from that day's own frames: the lake's query
    reads the table's whole file list, a cost that grows with the history, paid once per run
    instead of once per day (docs/benchmarks.md, "Measurements behind the code")."""

    def __init__(self, workspace_id: str, metric_type: str, attribution: str) -> None:
        self.params = {"workspace": workspace_id, "metric_type": metric_type,
                       "attribution": attribution}  # fmt: skip
        self.by_day: dict[dt.date, tuple] = {}
        self._frames: duckdb.DuckDBPyConnection | None = None

    @classmethod
    def from_lake(
        cls,
        conn: duckdb.DuckDBPyConnection,
        moengage: MoEngageResource,
        workspace_id: str,
        first: dt.date,
        last: dt.date,
    ) -> Headlines:
        ws = moengage.workspace(workspace_id)
        out = cls(workspace_id, ws.headline_metric_type, ws.attribution_types[0])
        sql = headline_sql(
            table_name(conn, PERFORMANCE_STATS), table_name(conn, CONVERSION_GOAL_STATS)
        )
        out._read(conn, sql, first, last)
        return out

    def set_day(self, day: dt.date, frames: dict[str, pd.DataFrame]) -> None:
        """The day's numbers from the frames just published as its slices (the same SQL), on an
        in-memory connection of the run's own: on a lake connection, registering a frame is a
        transaction that reads the catalog, ten times the cost of registering it here."""
        if self._frames is None:  # made once: a DuckDB connection costs ~20 ms to open
            self._frames = frames_connection()
        views = {"headline_perf": frames[PERFORMANCE_STATS.name],
                 "headline_conv": frames[CONVERSION_GOAL_STATS.name]}  # fmt: skip
        for view, frame in views.items():
            self._frames.register(view, frame)
        self.by_day.pop(day, None)
        self._read(self._frames, headline_sql(*views), day, day)

    def _read(self, conn: duckdb.DuckDBPyConnection, sql: str, first: dt.date, last: dt.date):
        rows = conn.execute(sql, {**self.params, "first": first, "last": last}).fetchall()
        self.by_day.update({row[0]: row[1:] for row in rows})


def headline_outcome(
    moengage: MoEngageResource,
    headlines: Headlines,
    workspace_id: str,
    stat_date: dt.date,
    loaded_before: set[dt.date],
) -> checks.Outcome:
    """The day's headline numbers against the workspace's trailing 28 loaded days."""
    settings = moengage.settings()
    first = stat_date - dt.timedelta(days=anomalies.WINDOW_DAYS)
    loaded = {d for d in loaded_before | {stat_date} if first <= d <= stat_date}
    history: dict[str, dict[dt.date, float]] = {m: {} for m in anomalies.METRICS}
    for day in loaded:  # a loaded day without rows sent nothing: 0, not unknown
        numbers = headlines.by_day.get(day, (0, 0, 0, None))
        for metric, value in zip(anomalies.METRICS, numbers, strict=True):
            if value is not None:
                history[metric][day] = float(value)
    values = {m: h.pop(stat_date) for m, h in history.items() if stat_date in h}
    today = dt.datetime.now(ZoneInfo(settings.zone(workspace_id))).date()
    return anomalies.judge(stat_date, today, settings.restatement_days, values, history)
