"""The report as an HTML page, the form for people: tiles, the chart, top campaigns by name.
Every text from the API or a config file is escaped; numbers are formatted, ids come last."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from moestats_dagster.report.data import METRICS, TOP, TOP_FLOWS, Report
from moestats_dagster.report.labels import change, compact, count, money

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{margin-bottom:.1em} .sub{color:#555;margin-top:0}
.tiles{display:grid;grid-template-columns:9em repeat(5,1fr);gap:6px;margin:1.2em 0}
.tiles div{background:#f5f6f8;border-radius:6px;padding:8px 10px}
.tiles .head{background:none;color:#555;font-size:.85em;padding-bottom:0}
.tiles .period{background:none;font-weight:600}
.tiles b{font-size:1.35em;display:block} .up{color:#1b7f3b} .down{color:#b22222}
.muted{color:#777;font-size:.85em}
table{border-collapse:collapse;margin-bottom:1em} td,th{padding:4px 10px;text-align:right}
th{border-bottom:1px solid #ccc} td.text,th.text{text-align:left} td.id{color:#777;font-size:.85em}
tr:nth-child(even) td{background:#fafafa}
"""


def render_html(
    report: Report, path: Path, image_name: str | None, chart_failed: str | None = None
) -> None:
    """The page; without `image_name` (the chart could not be drawn) it says so instead."""
    e = html.escape
    path.parent.mkdir(parents=True, exist_ok=True)
    notes = []
    if report.not_loaded:
        notes.append(f"{len(report.not_loaded)} of the {len(report.days)} days are not loaded "
                     f"yet ({_days(report.not_loaded)}): hatched grey in the chart.")  # fmt: skip
    if report.nothing_sent:
        notes.append(f"Nothing was sent on {_days(report.nothing_sent)} (loaded; yellow).")
    if report.silent_channels:
        notes.append(f"Nothing in {report.window_words} on: " + ", ".join(report.silent_channels)
                     + " (the workspace has campaigns there).")  # fmt: skip
    if not report.currency:
        notes.append("Revenue is in the workspace's own currency; set <code>currency:</code> "
                     "for the workspace in the workspaces file to name it.")  # fmt: skip
    path.write_text(
        f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(report.title)}</title>
<style>{STYLE}</style></head>
<body><h1>{e(report.title)}</h1><p class="sub">{e(report.subtitle)}</p>
{_tiles(report)}
{f"<p><b>{e(report.reach_line)}</b></p>" if report.reach_line else ""}
<h2>Each channel, day by day</h2>
{
            f'<img src="{e(image_name)}" alt="sends per day for each channel" style="max-width:100%">'
            if image_name
            else f'<p class="muted">The chart could not be drawn ({e(chart_failed or "")}); the numbers below are complete.</p>'
        }
{"".join(f'<p class="muted">{n}</p>' for n in notes)}
<h2>Top {TOP} campaigns by conversions</h2>{_table(report.top_conversions, report.currency)}
<h2>Top {TOP} campaigns by revenue</h2>{_table(report.top_revenue, report.currency)}
{_flows(report)}
{_reach(report)}
{"".join(f"<p>{e(line)}</p>" for line in report.reconciled_lines)}
<p class="muted">From moestats.campaign_daily_summary: each campaign counted once across
platforms, locales and variations; {report.window_words} up to {report.last:%-d %B %Y}, the latest
day loaded.</p></body></html>
"""
    )


def _tiles(report: Report) -> str:
    cells = ['<div class="head"></div>'] + [
        f'<div class="head">{label}</div>' for _, label in METRICS
    ]
    for tiles in report.tiles():
        first = tiles[0]
        name = first.label if first.days > 1 else f"{first.label} ({report.last:%a %-d %b})"
        if first.loaded_days < first.days:
            name += f' <span class="muted">{first.loaded_days} of {first.days} days loaded</span>'
        cells.append(f'<div class="period">{name}</div>')
        for tile in tiles:
            value = compact(tile.value)
            if tile.metric == "revenue" and report.currency:
                value += f" {html.escape(report.currency)}"
            delta = change(tile.value, tile.before)
            css = "up" if delta.startswith("+") or delta == "new" else (
                "down" if delta.startswith("−") else "muted")  # fmt: skip
            against = (f'<span class="{css}">{delta}</span> <span class="muted">vs before</span>'
                       if delta else '<span class="muted">nothing loaded before</span>')  # fmt: skip
            exact = (
                money(tile.value, report.currency)
                if tile.metric == "revenue"
                else count(tile.value)
            )
            cells.append(f'<div title="{exact}"><b>{value}</b>{against}</div>')
    return f'<div class="tiles">{"".join(cells)}</div>'


def _table(
    frame: pd.DataFrame | None, currency: str | None, *, empty: str = "none in these days"
) -> str:
    if frame is None or frame.empty:
        return f'<p class="muted">{empty}</p>'
    text = {"campaign", "channel", "step"}
    heads = {"campaign": "Campaign", "channel": "Channel", "conversions": "Conversions",
             "revenue": f"Revenue ({currency})" if currency else "Revenue", "sent": "Sent",
             "reach": "Reach (people)", "users_clicked": "People who clicked", "step": "Step",
             "clicks": "Clicks",
             "campaign_id": "Campaign id"}  # fmt: skip
    columns = list(frame.columns)
    head = "".join(
        f'<th class="{"text" if c in text else ""}">{html.escape(heads.get(c, c))}</th>'
        for c in columns
    )
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for c, v in zip(columns, row, strict=True):
            if c in text:
                cells.append(f'<td class="text">{html.escape(str(v))}</td>')
            elif c == "campaign_id":
                cells.append(f'<td class="id">{html.escape(str(v))}</td>')
            elif c == "revenue":
                cells.append(f"<td>{money(v, None)}</td>")
            else:
                cells.append(f"<td>{count(v)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _flows(report: Report) -> str:
    """Top flows, each with its steps in order: sent -> clicks -> conversions."""
    if report.flows is None:
        return ""
    head = f"<h2>Top {TOP_FLOWS} flows by conversions</h2>"
    if not report.flows:
        return head + f'<p class="muted">no flow sent anything in {report.window_words}</p>'
    parts = [head]
    for flow in report.flows:
        revenue = money(flow.revenue, report.currency)
        parts.append(
            f"<h3>{html.escape(flow.name)} <span class='muted'>{count(flow.conversions)} "
            f"conversions, {revenue} revenue, {count(flow.sent)} sent</span></h3>"
        )
        steps = flow.steps.copy()
        steps["step"] = [f"{n}. {name}" + (" (retired version)" if retired else "")
                         for n, (name, retired) in enumerate(
                             zip(steps.step, steps.retired.fillna(False), strict=True), 1)]  # fmt: skip
        parts.append(_table(steps.drop(columns=["retired"]), report.currency))
    parts.append(
        "<p class='muted'>Steps in order (the live version's, then a retired version's, which "
        "still send to the users inside it), TOTAL counts over the window "
        "(moestats.flow_daily_summary, moestats.flow_campaigns).</p>"
    )
    return "".join(parts)


def _reach(report: Report) -> str:
    if report.month is None or report.month_reach is None:
        return ""
    return (
        f"<h2>{html.escape(report.month_heading)}: top {TOP} campaigns</h2>"
        f"{_table(report.month_reach, report.currency)}<p class='muted'>Reach is the number of "
        "distinct people a campaign was sent to in the month, as MoEngage counts them for the "
        "whole month (moestats.campaign_monthly_summary). It is not the sum of the days' reach, "
        "and the campaigns' reaches do not add up either: one person can be reached by "
        "several.</p>"
    )


def _days(days) -> str:
    shown = ", ".join(f"{d:%-d %b}" for d in days[:6])
    return shown + (f" and {len(days) - 6} more" if len(days) > 6 else "")
