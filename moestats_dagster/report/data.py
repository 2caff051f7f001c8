"""What the report shows, read from the warehouse: the days, the headline periods, the top
campaigns and the month's reach. No drawing here (chart.py, page.py) and no Dagster (the asset
passes in which days were loaded)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

import duckdb
import pandas as pd

from moestats_dagster.lakehouse.ledger import MonthReconciled, months_reconciled
from moestats_dagster.report.labels import ATTRIBUTION_WORDS, METRIC_WORDS, channel_name

DAYS = 28  # the chart: four whole weeks
TOP = 10
METRICS = (("sent", "Sent"), ("delivered", "Delivered"), ("clicks", "Clicks"),
           ("conversions", "Conversions"), ("revenue", "Revenue"))  # fmt: skip
PERIODS = ((1, "Latest day"), (7, "Last 7 days"), (28, "Last 28 days"))

DAILY = """
SELECT stat_date, coalesce(channel, '(no metadata yet)') AS channel, sum(sent) AS sent,
    sum(delivered) AS delivered, sum(impressions) AS impressions, sum(clicks) AS clicks, sum({conversions}) AS conversions, sum({revenue}) AS revenue
FROM {summary}
WHERE workspace_id = $ws AND metric_type = $metric AND stat_date BETWEEN $first AND $last
GROUP BY ALL ORDER BY stat_date, channel
"""
TOP_BY = """
SELECT coalesce(any_value(campaign_name), '(no metadata yet)') AS campaign,
    any_value(channel) AS channel, sum({conversions}) AS conversions, sum({revenue}) AS revenue,
    sum(sent) AS sent, campaign_id
FROM {summary}
WHERE workspace_id = $ws AND metric_type = $metric AND stat_date BETWEEN $first AND $last
GROUP BY campaign_id HAVING sum({by}) > 0
ORDER BY sum({by}) DESC, campaign_id LIMIT {top}
"""
MONTH_REACH = """
SELECT coalesce(campaign_name, '(no metadata yet)') AS campaign, channel, reach, sent,
    users_clicked, campaign_id
FROM {monthly}
WHERE workspace_id = $ws AND month = $month AND reach > 0
ORDER BY reach DESC, campaign_id LIMIT {top}
"""
TOP_FLOWS = 5
# A flow's steps in order: the newest version's first (by position), then those only an older
# version has (a retired version still sends to the users inside it).
FLOW_STEPS = """
WITH steps AS (
    SELECT flow_id, campaign_id, arg_max(campaign_name, version_no) AS step,
        arg_max(channel, version_no) AS channel, max(version_no) AS version_no,
        arg_max(step_index, version_no) AS step_index
    FROM {flow_campaigns} WHERE workspace_id = $ws AND list_contains($flows, flow_id)
    GROUP BY flow_id, campaign_id
),
newest AS (SELECT flow_id, max(version_no) AS newest FROM steps GROUP BY flow_id)
SELECT st.flow_id, coalesce(any_value(st.step), any_value(s.campaign_name), st.campaign_id) AS step,
    any_value(coalesce(st.channel, s.channel)) AS channel,
    sum(s.sent) AS sent, sum(s.clicks) AS clicks, sum(s.{conversions}) AS conversions,
    sum(s.{revenue}) AS revenue, any_value(st.version_no < n.newest) AS retired, st.campaign_id
FROM steps st JOIN newest n USING (flow_id)
LEFT JOIN {summary} s ON s.workspace_id = $ws AND s.campaign_id = st.campaign_id
    AND s.metric_type = 'TOTAL' AND s.stat_date BETWEEN $first AND $last
GROUP BY st.flow_id, st.campaign_id
ORDER BY st.flow_id, any_value(st.version_no < n.newest), any_value(st.step_index), st.campaign_id
"""
TOP_FLOWS_BY = """
SELECT flow_id, any_value(flow_name) AS flow, sum({conversions}) AS conversions,
    sum({revenue}) AS revenue, sum(sent) AS sent, sum(clicks) AS clicks
FROM {flow_summary}
WHERE workspace_id = $ws AND stat_date BETWEEN $first AND $last
GROUP BY flow_id HAVING coalesce(sum(sent), 0) + coalesce(sum({conversions}), 0) > 0
ORDER BY sum({conversions}) DESC NULLS LAST, sum({revenue}) DESC NULLS LAST, flow_id
LIMIT {top}
"""


@dataclass
class FlowResult:
    """One flow's window: its totals, and its steps in order (sent -> clicks -> conversions)."""

    flow_id: str
    name: str
    conversions: float
    revenue: float
    sent: float
    steps: pd.DataFrame  # step, channel, sent, clicks, conversions, revenue, retired, campaign_id


@dataclass
class Tile:
    """One headline number: this period against the one before it."""

    metric: str
    label: str
    value: float
    before: float | None  # None: the period before is not (wholly) loaded
    loaded_days: int
    days: int


@dataclass
class Report:
    workspace_id: str
    first: dt.date  # the chart's first day (DAYS before `last`)
    last: dt.date  # the latest loaded day
    metric_type: str
    attribution_type: str
    daily: pd.DataFrame  # stat_date, channel, the METRICS: DAYS * 2 days, for the comparisons
    loaded: set[dt.date]  # days whose stats are in the lake (with or without sends)
    top_conversions: pd.DataFrame
    top_revenue: pd.DataFrame
    currency: str | None = None
    silent_channels: list[str] = field(default_factory=list)  # known, nothing in the window
    month: dt.date | None = None  # the latest month in campaign_monthly_summary, if any
    month_end: dt.date | None = None
    month_reach: pd.DataFrame | None = None  # its campaigns by reach
    flows: list[FlowResult] | None = None  # None: no flow is known for the workspace
    reconciled: list[MonthReconciled] | None = None  # None: not asked; []: none reconciled yet

    @cached_property
    def days(self) -> list[dt.date]:
        return [self.first + dt.timedelta(days=n) for n in range((self.last - self.first).days + 1)]

    @cached_property
    def not_loaded(self) -> list[dt.date]:
        return [d for d in self.days if d not in self.loaded]

    @cached_property  # asked for by every channel's panel
    def nothing_sent(self) -> list[dt.date]:
        """Loaded days on which no campaign sent anything (the API answered, with no campaigns)."""
        sent = self.daily.groupby("stat_date")["sent"].sum()
        return [d for d in self.days if d in self.loaded and not sent.get(d, 0)]

    @property
    def window_words(self) -> str:
        return "these four weeks" if len(self.days) == DAYS else f"these {len(self.days)} days"

    @property
    def title(self) -> str:
        return f"{self.workspace_id}: campaign results, {self.first:%-d %b} – {self.last:%-d %b %Y}"

    @property
    def subtitle(self) -> str:
        counted = METRIC_WORDS.get(self.metric_type, self.metric_type)
        attributed = ATTRIBUTION_WORDS.get(self.attribution_type, self.attribution_type)
        currency = f" in {self.currency}" if self.currency else ""
        return f"Counts: {counted}. Conversions and revenue{currency}: {attributed} attribution."

    @property
    def month_heading(self) -> str:
        if self.month is None:
            return ""
        whole = self.month_end is None or (self.month_end + dt.timedelta(days=1)).day == 1
        so_far = "" if whole else f" (so far: to {self.month_end:%-d %b})"
        return f"Reach in {self.month:%B %Y}{so_far}"

    @property
    def reconciled_lines(self) -> list[str]:
        """Up to which month the lake matches MoEngage's own totals, and what does not."""
        if self.reconciled is None:
            return []
        if not self.reconciled:
            return ["Not reconciled with MoEngage's month totals yet (moestats/reconciliation)."]
        matching = [r for r in self.reconciled if not r.differing]
        lines = []
        if matching:
            last = max(matching, key=lambda r: r.month)
            whole = (last.end + dt.timedelta(days=1)).day == 1
            lines.append(f"Reconciled with MoEngage up to {last.month:%B %Y}"
                         f"{'' if whole else f' (to {last.end:%-d %b})'}: every campaign's days "
                         "add up to MoEngage's own month totals.")  # fmt: skip
        for r in sorted(self.reconciled, key=lambda r: r.month):
            if r.differing:
                lines.append(f"Not reconciled: {r.month:%B %Y}: {r.differing} values differ in "
                             f"{r.campaigns} campaigns ({r.statuses}).")  # fmt: skip
        return lines

    @property
    def reach_line(self) -> str:
        """The month's reach in one line: its biggest campaign (reaches never add up)."""
        if self.month_reach is None or self.month_reach.empty:
            return ""
        top = self.month_reach.iloc[0]
        return (f"{self.month_heading}: the campaign that reached the most people, "
                f"{top['campaign']}, reached {round(top['reach']):,}.")  # fmt: skip

    def tiles(self) -> list[list[Tile]]:
        """Per period (latest day, 7, 28 days), the five headline numbers against the period
        before. A comparison is only made with a period whose days are all loaded."""
        by_day = self.daily.groupby("stat_date")[[m for m, _ in METRICS]].sum()
        rows = []
        for days, label in PERIODS:
            now = [self.last - dt.timedelta(days=n) for n in range(days)]
            before = [self.last - dt.timedelta(days=n) for n in range(days, 2 * days)]
            complete = all(d in self.loaded for d in before)
            rows.append(
                [
                    Tile(
                        metric,
                        label,
                        float(by_day[metric].reindex(now).fillna(0).sum()),
                        float(by_day[metric].reindex(before).fillna(0).sum()) if complete else None,
                        sum(d in self.loaded for d in now),
                        days,
                    )  # fmt: skip
                    for metric, _ in METRICS
                ]
            )
        return rows


def build_report(
    conn: duckdb.DuckDBPyConnection,
    summary: str,
    workspace_id: str,
    metric_type: str,
    attribution_type: str,
    monthly: str | None = None,
    *,
    loaded: Iterable[dt.date] = (),
    campaigns: str | None = None,
    currency: str | None = None,
    start: dt.date | None = None,
    flow_summary: str | None = None,
    flow_campaigns: str | None = None,
    reconciled: bool = False,
) -> Report | None:
    """The four weeks up to the workspace's latest loaded day (and the four before, for the
    comparisons); None when nothing is loaded. `loaded`: days known to be in the lake — the
    asset passes Dagster's materialized partitions, so a day the API answered with no
    campaigns counts as loaded; days with rows in the summary always count."""
    with_rows = {
        r[0]
        for r in conn.execute(
            f"SELECT DISTINCT stat_date FROM {summary} WHERE workspace_id = ?", [workspace_id]
        ).fetchall()
    }
    days_loaded = with_rows | set(loaded)
    if not days_loaded:
        return None
    last = max(days_loaded)
    first = max(last - dt.timedelta(days=DAYS - 1), start or dt.date.min)
    params = {"ws": workspace_id, "metric": metric_type,
              "first": last - dt.timedelta(days=2 * DAYS - 1), "last": last}  # fmt: skip
    columns = {"conversions": f"conversions_{attribution_type.lower()}",
               "revenue": f"revenue_{attribution_type.lower()}"}  # fmt: skip
    daily = conn.execute(DAILY.format(summary=summary, **columns), params).fetchdf()
    daily["stat_date"] = pd.to_datetime(daily["stat_date"]).dt.date
    params["first"] = first
    tops = [
        _named(
            conn.execute(
                TOP_BY.format(summary=summary, by=columns[by], top=TOP, **columns), params
            ).fetchdf()
        )  # fmt: skip
        for by in ("conversions", "revenue")
    ]
    report = Report(workspace_id, first, last, metric_type, attribution_type, daily,
                    days_loaded, *tops, currency=currency)  # fmt: skip
    if campaigns is not None:
        known = {
            r[0]
            for r in conn.execute(
                f"SELECT DISTINCT channel FROM {campaigns} WHERE workspace_id = ? "
                "AND channel IS NOT NULL",
                [workspace_id],
            ).fetchall()
        }
        window = daily[daily["stat_date"] >= first]
        active = window[["sent", "impressions", "clicks", "conversions"]].fillna(0).sum(axis=1)
        report.silent_channels = sorted(
            channel_name(c) for c in known - set(window.loc[active > 0, "channel"])
        )
    if monthly is not None:  # the month's reach: the API's UNIQUE for the month, never summed
        month, month_end = conn.execute(
            f"SELECT month, max(period_end) FROM {monthly} WHERE workspace_id = ? "
            "GROUP BY month ORDER BY month DESC LIMIT 1",
            [workspace_id],
        ).fetchone() or (None, None)
        if month is not None:
            report.month, report.month_end = month, month_end
            report.month_reach = _named(
                conn.execute(
                    MONTH_REACH.format(monthly=monthly, top=TOP),
                    {"ws": workspace_id, "month": month},
                ).fetchdf()
            )
    if flow_summary is not None and flow_campaigns is not None:
        report.flows = _flows(conn, flow_summary, flow_campaigns, summary, columns, params)
    if reconciled:  # how far the lake is proven against MoEngage (the ledger's summary)
        report.reconciled = months_reconciled(conn, workspace_id)
    return report


def _flows(
    conn: duckdb.DuckDBPyConnection, flow_summary: str, flow_campaigns: str, summary: str,
    columns: dict[str, str], params: dict,
) -> list[FlowResult] | None:  # fmt: skip
    """The top flows of the window by conversions (then revenue), each with its steps; None
    when the workspace has no flow in the lake."""
    known = conn.execute(
        f"SELECT count(*) FROM {flow_campaigns} WHERE workspace_id = ?", [params["ws"]]
    ).fetchone()[0]
    if not known:
        return None
    window = {k: params[k] for k in ("ws", "first", "last")}
    top = conn.execute(
        TOP_FLOWS_BY.format(flow_summary=flow_summary, top=TOP_FLOWS, **columns), window
    ).fetchdf()
    if top.empty:
        return []
    steps = conn.execute(
        FLOW_STEPS.format(flow_campaigns=flow_campaigns, summary=summary, **columns),
        {**window, "flows": top.flow_id.tolist()},
    ).fetchdf()
    steps["channel"] = steps["channel"].map(channel_name)
    return [
        FlowResult(
            row.flow_id,
            row.flow if isinstance(row.flow, str) else row.flow_id,
            _number(row.conversions),
            _number(row.revenue),
            _number(row.sent),
            steps[steps.flow_id == row.flow_id].drop(columns=["flow_id"]).reset_index(drop=True),
        )  # fmt: skip
        for row in top.itertuples(index=False)
    ]


def _number(value) -> float:
    return 0.0 if value is None or pd.isna(value) else float(value)


def _named(frame: pd.DataFrame) -> pd.DataFrame:
    """Channel codes as names, the campaign id last (it is for looking up, not for reading)."""
    frame["channel"] = frame["channel"].map(channel_name)
    return frame
