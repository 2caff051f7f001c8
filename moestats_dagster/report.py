"""The per-workspace report for people: 30 days of headline numbers by channel, and the top
campaigns by conversions and revenue, as a PNG chart and a small HTML page.

Reads the summary view; writes two files. No Dagster here (assets/report.py wraps it).
"""

from __future__ import annotations

import datetime as dt
import html
import os
from dataclasses import dataclass
from pathlib import Path

import duckdb
import matplotlib

from .object_store import is_url

matplotlib.use("Agg")  # files only: no display, safe in a run worker's thread

import matplotlib.dates as mdates  # noqa: E402 (after the backend is chosen)
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

REPORTS_PATH_ENV = "MOESTATS_REPORTS_PATH"
DAYS = 30
TOP = 10
CHANNELS_SHOWN = 7  # the biggest channels by name; the rest are summed as "other channels"
PANELS = (("sent", "Sent"), ("delivered", "Delivered"), ("clicks", "Clicks"),
          ("conversions", "Conversions"), ("revenue", "Revenue"))  # fmt: skip


def reports_path(database: str) -> Path:
    """MOESTATS_REPORTS_PATH, else `reports/` beside the lake folder (data/lake -> data/reports;
    data/reports in the working directory for a lake on object storage)."""
    value = os.environ.get(REPORTS_PATH_ENV, "").strip()
    if value:
        return Path(value)
    if is_url(database):
        return Path("data", "reports").absolute()
    return Path(database).resolve().parent / "reports"


@dataclass
class Report:
    workspace_id: str
    first: dt.date
    last: dt.date
    metric_type: str
    attribution_type: str
    daily: pd.DataFrame  # stat_date, channel, sent, delivered, clicks, conversions, revenue
    top_conversions: pd.DataFrame
    top_revenue: pd.DataFrame
    month: dt.date | None = None  # the latest month in campaign_monthly_summary, if any
    month_end: dt.date | None = None
    month_reach: pd.DataFrame | None = None  # its campaigns by reach

    @property
    def month_heading(self) -> str:
        if self.month is None:
            return ""
        whole = self.month_end is None or (self.month_end + dt.timedelta(days=1)).day == 1
        so_far = "" if whole else f" (so far: to {self.month_end})"
        return f"Reach in {self.month:%B %Y}{so_far}"

    @property
    def title(self) -> str:
        return (
            f"{self.workspace_id}: {self.first} to {self.last} "
            f"({self.metric_type}, conversions and revenue {self.attribution_type})"
        )


DAILY = """
SELECT stat_date, coalesce(channel, '(no metadata yet)') AS channel,
    sum(sent) AS sent, sum(delivered) AS delivered, sum(clicks) AS clicks,
    sum({conversions}) AS conversions, sum({revenue}) AS revenue
FROM {summary}
WHERE workspace_id = $ws AND metric_type = $metric AND stat_date BETWEEN $first AND $last
GROUP BY ALL ORDER BY stat_date, channel
"""
TOP_BY = """
SELECT campaign_id, coalesce(any_value(campaign_name), '(no metadata yet)') AS campaign_name,
    any_value(channel) AS channel, sum({conversions}) AS conversions, sum({revenue}) AS revenue,
    sum(sent) AS sent
FROM {summary}
WHERE workspace_id = $ws AND metric_type = $metric AND stat_date BETWEEN $first AND $last
GROUP BY campaign_id HAVING sum({by}) > 0
ORDER BY sum({by}) DESC, campaign_id LIMIT {top}
"""


MONTH_REACH = """
SELECT campaign_id, coalesce(campaign_name, '(no metadata yet)') AS campaign_name, channel,
    reach, sent, users_clicked
FROM {monthly}
WHERE workspace_id = $ws AND month = $month AND reach > 0
ORDER BY reach DESC, campaign_id LIMIT {top}
"""


def build_report(
    conn: duckdb.DuckDBPyConnection,
    summary: str,
    workspace_id: str,
    metric_type: str,
    attribution_type: str,
    monthly: str | None = None,
) -> Report | None:
    """The last 30 days up to the workspace's latest loaded day; None when it has no data."""
    last = conn.execute(
        f"SELECT max(stat_date) FROM {summary} WHERE workspace_id = ?", [workspace_id]
    ).fetchone()[0]
    if last is None:
        return None
    first = conn.execute(
        f"SELECT min(stat_date) FROM {summary} WHERE workspace_id = ? AND stat_date >= ?",
        [workspace_id, last - dt.timedelta(days=DAYS - 1)],
    ).fetchone()[0]  # a workspace with fewer days loaded is shown from its first one
    params = {"ws": workspace_id, "metric": metric_type, "first": first, "last": last}
    columns = {"conversions": f"conversions_{attribution_type.lower()}",
               "revenue": f"revenue_{attribution_type.lower()}"}  # fmt: skip
    daily = conn.execute(DAILY.format(summary=summary, **columns), params).fetchdf()
    tops = [
        conn.execute(
            TOP_BY.format(summary=summary, by=columns[by], top=TOP, **columns), params
        ).fetchdf()
        for by in ("conversions", "revenue")
    ]
    report = Report(workspace_id, first, last, metric_type, attribution_type, daily, *tops)
    if monthly is not None:  # the month's reach: the API's UNIQUE for the month, never summed
        month, month_end = conn.execute(
            f"SELECT month, max(period_end) FROM {monthly} WHERE workspace_id = ? "
            "GROUP BY month ORDER BY month DESC LIMIT 1",
            [workspace_id],
        ).fetchone() or (None, None)
        if month is not None:
            report.month, report.month_end = month, month_end
            report.month_reach = conn.execute(
                MONTH_REACH.format(monthly=monthly, top=TOP), {"ws": workspace_id, "month": month}
            ).fetchdf()
    return report


def _by_channel(daily: pd.DataFrame) -> pd.DataFrame:
    """The biggest channels (by sent, then conversions) by name, the others as one line."""
    size = daily.groupby("channel")[["sent", "conversions"]].sum().fillna(0)
    ranked = size.sort_values(["sent", "conversions"], ascending=False).index.tolist()
    keep = set(ranked[:CHANNELS_SHOWN] if len(ranked) <= CHANNELS_SHOWN + 1
               else ranked[:CHANNELS_SHOWN])  # fmt: skip
    out = daily.copy()
    out["channel"] = out["channel"].where(out["channel"].isin(keep), "other channels")
    return out


def render_png(report: Report, path: Path) -> None:
    """Five panels (sent, delivered, clicks, conversions, revenue), one line per channel.
    A day with no data at all is a gap, not a zero; a channel silent on a day with data is 0."""
    days = pd.date_range(report.first, report.last, freq="D")
    daily = _by_channel(report.daily)
    with_data = pd.DatetimeIndex(pd.to_datetime(daily["stat_date"].unique()))
    channels = list(dict.fromkeys(daily["channel"]))
    colors = {c: plt.get_cmap("tab10")(i % 10) for i, c in enumerate(channels)}
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(10, 12), sharex=True, dpi=100)
    try:
        fig.suptitle(report.title, fontsize=12)
        for ax, (column, label) in zip(axes, PANELS, strict=True):
            wide = daily.pivot_table(
                index="stat_date", columns="channel", values=column, aggfunc="sum"
            )
            wide.index = pd.to_datetime(wide.index)
            wide = wide.reindex(with_data).fillna(0).reindex(days)
            for channel in wide.columns:
                ax.plot(wide.index, wide[channel], marker=".", linewidth=1.5, label=channel,
                        color=colors[channel])  # fmt: skip
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
            ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_compact))
        axes[-1].xaxis.set_major_locator(mdates.DayLocator(interval=max(1, len(days) // 10)))
        axes[-1].xaxis.set_major_formatter(mdates.DateFormatter("%b %d"))
        axes[0].legend(loc="upper left", ncols=4, fontsize=8, frameon=False)
        fig.autofmt_xdate()
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


def render_html(report: Report, path: Path, image_name: str) -> None:
    """A small self-describing page: the chart and the two top-campaign tables."""

    def table(frame: pd.DataFrame) -> str:
        if frame.empty:
            return "<p><em>none in these days</em></p>"
        return frame.to_html(index=False, border=0, float_format=lambda v: f"{v:,.2f}",
                             na_rep="–", classes="top")  # fmt: skip

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(report.title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}
table.top{{border-collapse:collapse}} .top td,.top th{{padding:4px 10px;text-align:right}}
.top td:nth-child(2),.top th:nth-child(2){{text-align:left}}</style></head>
<body><h1>{html.escape(report.title)}</h1>
<img src="{html.escape(image_name)}" alt="daily sent, delivered, clicks, conversions and revenue
 by channel" style="max-width:100%">
<h2>Top {TOP} campaigns by conversions</h2>{table(report.top_conversions)}
<h2>Top {TOP} campaigns by revenue</h2>{table(report.top_revenue)}
{_reach_section(report, table)}
<p>From moestats.campaign_daily_summary; each campaign counted once across platforms, locales
and variations. A day without any data is a gap in the lines.</p></body></html>
"""
    )


def _reach_section(report: Report, table) -> str:
    if report.month is None or report.month_reach is None:
        return ""
    return (
        f"<h2>{html.escape(report.month_heading)}: top {TOP} campaigns</h2>"
        f"{table(report.month_reach)}<p>Reach is the number of distinct people a campaign was "
        "sent to in the month, as MoEngage counts them for the whole month "
        "(moestats.campaign_monthly_summary). It is not the sum of the days' reach, and the "
        "campaigns' reaches do not add up either: one person can be reached by several.</p>"
    )


def _compact(value: float, _position: int) -> str:
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"
