"""The report as one PNG (for Slack and the Dagster UI): headline tiles, then one small chart per
channel — the same colour for a channel in every workspace — with days not loaded and days with
nothing sent marked as such, never left as unexplained holes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, safe in a run worker's thread

import matplotlib.dates as mdates  # noqa: E402 (after the backend is chosen)
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from moestats_dagster.report.data import METRICS, Report  # noqa: E402
from moestats_dagster.report.labels import change, channel_colour, channel_name, compact  # noqa: E402

NOT_LOADED = {"facecolor": "#BBBBBB", "alpha": 0.35, "hatch": "///", "edgecolor": "#888888"}
NOTHING_SENT = {"facecolor": "#F2D96B", "alpha": 0.45}
COLUMNS = 2
TILES_LEFT, TILE_WIDTH = 0.2, 0.16  # the tiles' first column and each column's width (axes)


def render_png(report: Report, path: Path, *, tiles: bool = True) -> None:
    """The whole report as one image (`tiles=False`: only the channels, for the HTML page, which
    has its own tiles)."""
    window = report.daily[report.daily["stat_date"] >= report.first]
    size = window.groupby("channel")[["sent", "impressions", "conversions"]].sum().fillna(0)
    size = size[size.sum(axis=1) > 0]
    channels = size.sort_values(["sent", "impressions", "conversions"], ascending=False).index
    rows = max(1, -(-len(channels) // COLUMNS))
    head = 3.6 if tiles else 0.0
    height = head + 2.1 * rows + 0.7
    # Every text is drawn literally: names from MoEngage or the workspaces file carry `$`, `^`,
    # `_` and `\` ("Get $5 ^_^ get $10"), which matplotlib would otherwise read as math.
    with matplotlib.rc_context({"text.parse_math": False}):
        _render(report, path, tiles, window, channels, rows, height)


def _render(report: Report, path: Path, tiles: bool, window, channels, rows: int,
            height: float) -> None:  # fmt: skip
    fig = plt.figure(figsize=(11, height), dpi=100)
    grid = fig.add_gridspec(
        rows + tiles, COLUMNS, height_ratios=[2.4] * tiles + [2.0] * rows, hspace=0.75,
        wspace=0.18, top=1 - (0.95 if tiles else 0.25) / height, bottom=0.75 / height,
        left=0.06, right=0.98,
    )  # fmt: skip
    try:
        if tiles:
            fig.suptitle(report.title, fontsize=15, fontweight="bold", x=0.06, ha="left",
                         y=1 - 0.15 / height)  # fmt: skip
            fig.text(0.06, 1 - 0.5 / height, report.subtitle, fontsize=10, color="#444444")
            _tiles(fig.add_subplot(grid[0, :]), report)
        days = report.days
        for i, channel in enumerate(channels):
            ax = fig.add_subplot(grid[tiles + i // COLUMNS, i % COLUMNS])
            _channel_panel(ax, report, window[window["channel"] == channel], channel, days)
        if not len(channels):
            ax = fig.add_subplot(grid[int(tiles), :])
            ax.axis("off")
            ax.text(0.5, 0.5, f"Nothing was sent in {report.window_words}.", ha="center",
                    fontsize=12)  # fmt: skip
        notes = [Patch(label="not loaded (run a backfill for these days)", **NOT_LOADED),
                 Patch(label="loaded: nothing sent that day", **NOTHING_SENT)]  # fmt: skip
        fig.legend(handles=notes, loc="lower left", ncols=2, frameon=False, fontsize=9,
                   bbox_to_anchor=(0.06, 0.0))  # fmt: skip
        if report.silent_channels:
            fig.text(0.06, 0.4 / height, f"Nothing in {report.window_words} on: "
                     + ", ".join(report.silent_channels), fontsize=9, color="#444444")  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


def _tiles(ax, report: Report) -> None:
    """A table of tiles: one row per period, one column per metric."""
    ax.axis("off")
    labels = dict(METRICS)
    # Each tile on two lines, in a column of its own: the value, and under it the change; the
    # period's name, and under it how many of its days are loaded. Side by side, a long value
    # ("406k EUR") ran into its change and "Last 28 days (7 of 28 loaded)" into the first value.
    for row, tiles in enumerate(report.tiles()):
        y = 1 - row / 3
        period = tiles[0]
        name = period.label if period.days > 1 else f"{report.last:%a %-d %b}"
        ax.text(0, y - 0.08, name, fontsize=9.5, fontweight="bold", va="center",
                transform=ax.transAxes)  # fmt: skip
        if period.loaded_days < period.days:
            ax.text(0, y - 0.2, f"{period.loaded_days} of {period.days} days loaded", fontsize=8,
                    color="#666666", va="center", transform=ax.transAxes)  # fmt: skip
        for col, tile in enumerate(tiles):
            x = TILES_LEFT + col * TILE_WIDTH
            value = compact(tile.value)
            if tile.metric == "revenue" and report.currency:
                value = f"{value} {report.currency}"
            ax.text(x, y - 0.08, value, fontsize=13, va="center", transform=ax.transAxes)
            delta = change(tile.value, tile.before)
            if delta:
                colour = "#1B7F3B" if delta.startswith("+") or delta == "new" else (
                    "#B22222" if delta.startswith("−") else "#666666")  # fmt: skip
                ax.text(x, y - 0.2, delta, fontsize=8.5, color=colour, va="center",
                        transform=ax.transAxes)  # fmt: skip
            elif row == 0 or tile.before is None:
                ax.text(x, y - 0.2, "no earlier data" if col == 0 else "", fontsize=7,
                        color="#888888", va="center", transform=ax.transAxes)  # fmt: skip
            if row == 0:
                ax.text(x, 1.08, labels[tile.metric], fontsize=9, color="#444444",
                        transform=ax.transAxes)  # fmt: skip
    ax.text(TILES_LEFT, -0.08, "Change: against the same number of days just before.",
            fontsize=8, color="#666666", transform=ax.transAxes)  # fmt: skip
    if report.reach_line:
        ax.text(0, -0.22, report.reach_line, fontsize=9, transform=ax.transAxes)


def _channel_panel(ax, report: Report, rows, channel: str, days: list[dt.date]) -> None:
    """Sends per day; for a channel that does not send (in-app, on-site) its impressions, and
    for one that shows neither (ad audiences) its conversions."""
    colour = channel_colour(channel)
    totals = rows[["sent", "impressions", "clicks", "conversions"]].fillna(0).sum()
    measure = next((m for m in ("sent", "impressions", "conversions") if totals[m] > 0), "sent")
    values = rows.groupby("stat_date")[measure].sum().reindex(days).fillna(0)
    ax.bar(days, values.values, color=colour, width=0.8)
    for day in report.not_loaded:
        ax.axvspan(*_whole(day), **NOT_LOADED)
    for day in report.nothing_sent:
        ax.axvspan(*_whole(day), **NOTHING_SENT)
    extra = "" if measure == "conversions" else f"  ·  {compact(totals['conversions'])} conversions"
    ax.set_title(f"{channel_name(channel)}", fontsize=10, loc="left", color=colour,
                 fontweight="bold")  # fmt: skip
    ax.set_title(f"{compact(totals[measure])} {measure}{extra}", fontsize=8.5, loc="right",
                 color="#444444")  # fmt: skip
    ax.set_xlim(days[0] - dt.timedelta(days=1), days[-1] + dt.timedelta(days=1))
    ax.set_ylim(bottom=0, top=max(1.0, float(values.max()) * 1.1))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(compact))
    if len(days) <= 10:
        ax.xaxis.set_major_locator(mdates.DayLocator())
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%a %-d"))
    else:
        ax.xaxis.set_major_locator(mdates.WeekdayLocator(byweekday=mdates.MO))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%-d %b"))
    ax.tick_params(labelsize=8)
    ax.set_ylabel(measure, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(True, axis="y", alpha=0.3)


def _whole(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The day's column on the axis (its bar is centred on midnight; a date plus hours is still
    the same date, hence datetimes)."""
    noon_before = dt.datetime.combine(day, dt.time()) - dt.timedelta(hours=12)
    return noon_before, noon_before + dt.timedelta(days=1)
