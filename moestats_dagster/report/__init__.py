"""The per-workspace report for people: headline tiles for the latest day and the last 7 and
28 days against the period before, one small chart per channel, the top campaigns by name and
the month's reach — as an HTML page and a PNG (for Slack and the Dagster UI).

Reads the summary views; writes two files. No Dagster here (orchestration/defs/report.py wraps it).
"""

from __future__ import annotations

import os
from pathlib import Path

from moestats_dagster.lakehouse.object_store import is_url
from moestats_dagster.report.data import DAYS, TOP, Report, build_report
from moestats_dagster.report.page import render_html

__all__ = ["DAYS", "TOP", "Report", "build_report", "render_html", "render_png", "reports_path"]

REPORTS_PATH_ENV = "MOESTATS_REPORTS_PATH"


def render_png(report: Report, path: Path, *, tiles: bool = True) -> None:
    """The report's chart as a PNG (`tiles=False`: the channels only, for the HTML page).
    Matplotlib is imported when a chart is drawn, not with the package: every run process loads
    the definitions, and the plotting stack was a large share of each one's start
    (`python -X importtime`)."""
    from moestats_dagster.report.chart import render_png as draw

    draw(report, path, tiles=tiles)


def reports_path(database: str) -> Path:
    """MOESTATS_REPORTS_PATH, else `reports/` beside the lake folder (data/lake -> data/reports;
    data/reports in the working directory for a lake on object storage)."""
    value = os.environ.get(REPORTS_PATH_ENV, "").strip()
    if value:
        return Path(value)
    if is_url(database):
        return Path("data", "reports").absolute()
    return Path(database).resolve().parent / "reports"
