"""The per-workspace report: rendered from sandbox data to a PNG that is not blank, and HTML."""

from __future__ import annotations

import base64
import datetime as dt
import io

import duckdb
import matplotlib.image
import numpy as np
import pytest
from dagster import DagsterInstance

from moestats_dagster.lakehouse.warehouse import connection
from moestats_dagster.orchestration.build import CAMPAIGNS_JOB, JOB_NAME
from moestats_dagster.orchestration.lib.partitions import partition_key
from moestats_dagster.report import build_report, render_html, render_png
from moestats_dagster.report.chart import NOTHING_SENT
from moestats_dagster.report.labels import (
    CHANNEL_COLOURS,
    change,
    channel_colour,
    channel_name,
    compact,
    count,
    money,
)
from moestats_dagster_tests.conftest import ALPHA_KEY
from moestats_dagster_tests.helpers import build

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
DAYS = [dt.date(2024, 12, 1) + dt.timedelta(days=n) for n in range(5)]


def test_the_report_renders_a_chart_and_a_page_from_sandbox_data(
    sandbox, write_workspaces, database, limiter_dir, tmp_path, monkeypatch
):
    monkeypatch.delenv("MOESTATS_REPORTS_PATH", raising=False)
    small = {"attribution_types": ["VIEW_THROUGH"], "metric_types": ["TOTAL"]}  # few calls
    path = write_workspaces(sandbox, {"id": "WS_ALPHA", "api_key": ALPHA_KEY, **small})
    defs = build(path, database, limiter_dir)
    instance = DagsterInstance.ephemeral()
    for day in DAYS:
        defs.resolve_job_def(JOB_NAME).execute_in_process(
            partition_key=partition_key(day, "WS_ALPHA"), instance=instance, run_config=QUIET
        )
    result = defs.resolve_job_def(CAMPAIGNS_JOB).execute_in_process(
        partition_key="WS_ALPHA", instance=instance, run_config=QUIET
    )
    [report] = [
        m for m in result.get_asset_materialization_events()
        if m.asset_key.path[-1] == "campaign_report"
    ]  # fmt: skip
    metadata = report.materialization.metadata
    folder = tmp_path / "reports" / "WS_ALPHA"  # beside the lake folder (tmp_path/lake)
    assert metadata["png"].value == str(folder / "report.png")
    assert (
        metadata["last_day"].value == "2024-12-05" and metadata["first_day"].value == "2024-11-08"
    )

    # the chart: a real PNG with ink on it, the same one the UI shows inline, each channel
    # drawn in its own fixed colour
    pixels = matplotlib.image.imread(folder / "report.png")
    width = pixels.shape[1]
    assert width == 1100
    rgb = pixels[..., :3]
    ink = (rgb.sum(axis=2) < 2.7).mean()  # share of pixels that are not (near) white
    assert ink > 0.02, ink
    channels = {c for c in report_channels(database) if c in CHANNEL_COLOURS}
    assert channels
    for channel in channels:
        assert _has_colour(rgb, CHANNEL_COLOURS[channel]), channel
    inline = metadata["chart"].value
    assert inline.startswith("![WS_ALPHA: campaign results, ")
    png = base64.b64decode(inline.split("base64,", 1)[1].rstrip(")"))
    assert png == (folder / "report.png").read_bytes()
    assert matplotlib.image.imread(io.BytesIO(png), format="png").shape == pixels.shape

    # the UI's inline metadata: headline numbers and the top campaigns as a table
    with connection(database) as conn:
        sent, last_sent = conn.execute(
            "SELECT sum(sent), sum(sent) FILTER (stat_date = DATE '2024-12-05') "
            "FROM moestats.campaign_daily_summary WHERE workspace_id = 'WS_ALPHA' "
            "AND metric_type = 'TOTAL'"
        ).fetchone()
        top = conn.execute(
            "SELECT campaign_name, sum(conversions_view_through) AS c, any_value(campaign_id) "
            "FROM moestats.campaign_daily_summary WHERE workspace_id = 'WS_ALPHA' "
            "AND metric_type = 'TOTAL' GROUP BY campaign_id, campaign_name "
            "ORDER BY c DESC, campaign_id LIMIT 1"
        ).fetchone()
    assert metadata["sent_latest_day"].value == last_sent
    assert metadata["sent_last_7_days"].value == sent  # all five days loaded are in the week
    assert metadata["days_not_loaded"].value == 28 - 5
    table = metadata["top_by_conversions"].value
    assert [c.name for c in table.schema.columns][0] == "campaign"
    assert [c.name for c in table.schema.columns][-1] == "campaign_id"
    assert table.records[0].data["campaign"] == top[0]

    # the page: tiles, the chart, top campaigns by name with whole numbers, ids last
    page = (folder / "report.html").read_text()
    assert '<img src="channels.png"' in page and (folder / "channels.png").stat().st_size
    assert f"<b>{compact(sent)}</b>" in page  # the last 7 days' tile
    assert "23 of the 28 days are not loaded" in page
    first_row = page.split("Top 10 campaigns by conversions</h2>", 1)[1].split("</tr>", 2)[1]
    assert first_row.startswith(f'<tr><td class="text">{top[0]}</td>')
    assert first_row.endswith(f'<td class="id">{top[2]}</td>')
    assert (
        f"<td>{round(top[1]):,}</td>" in first_row
        and ".00</td>" not in first_row.split("</td>", 3)[2]
    )  # conversions are counts: "1,234", not "1,234.00"


def report_channels(database: str) -> set[str]:
    with connection(database) as conn:
        return {
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT channel FROM moestats.campaign_daily_summary "
                "WHERE workspace_id = 'WS_ALPHA' AND sent > 0"
            ).fetchall()
        }


def _has_colour(rgb, hex_colour: str) -> bool:
    want = np.array([int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return bool((np.abs(rgb - want).max(axis=2) < 0.02).sum() > 50)


SUMMARY = """
CREATE TABLE summary (workspace_id VARCHAR, stat_date DATE, metric_type VARCHAR,
    campaign_id VARCHAR, campaign_name VARCHAR, channel VARCHAR, sent BIGINT, delivered BIGINT,
    impressions BIGINT, clicks BIGINT, conversions_view_through BIGINT, revenue_view_through DOUBLE);
CREATE TABLE campaigns (workspace_id VARCHAR, channel VARCHAR);
INSERT INTO campaigns VALUES ('W', 'PUSH'), ('W', 'EMAIL'), ('W', 'SMS');
"""
LAST = dt.date(2026, 11, 30)


def _summary(rows) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect()
    conn.execute(SUMMARY)
    conn.executemany(
        "INSERT INTO summary VALUES ('W', ?, 'TOTAL', ?, ?, ?, ?, ?, NULL, ?, ?, ?)", rows
    )
    return conn


def test_the_report_tells_days_not_loaded_from_days_with_nothing_sent(tmp_path):
    """14 days loaded: sends on all but one (the API answered with no campaigns: a loaded day
    without rows). The other 14 of the four weeks were never loaded."""
    loaded = [LAST - dt.timedelta(days=n) for n in range(14)]
    quiet = LAST - dt.timedelta(days=3)
    rows = [
        (day, f"c{n}", name, channel, 100 * (n + 1), 90 * (n + 1), 10, 2, 12.5)
        for day in loaded if day != quiet
        for n, (name, channel) in enumerate([
            ("Black Friday <b>push</b> & <script>x</script>", "PUSH"), ("Weekly news", "EMAIL")
        ])
    ]  # fmt: skip
    conn = _summary(rows)
    report = build_report(conn, "summary", "W", "TOTAL", "VIEW_THROUGH", loaded=loaded,
                          campaigns="campaigns", currency="EUR")  # fmt: skip
    assert report.last == LAST and report.first == LAST - dt.timedelta(days=27)
    assert report.nothing_sent == [quiet]
    assert report.not_loaded == [LAST - dt.timedelta(days=n) for n in range(27, 13, -1)]
    assert report.silent_channels == ["SMS"]
    latest, week, four_weeks = report.tiles()
    assert [t.value for t in latest] == [300, 270, 20, 4, 25.0]
    assert latest[0].before == 300  # the day before was loaded: compared
    assert week[0].value == 6 * 300 and week[0].before == 7 * 300 and week[0].loaded_days == 7
    assert change(week[0].value, week[0].before) == "−14%"
    assert four_weeks[0].before is None and four_weeks[0].loaded_days == 14  # nothing to compare

    page = tmp_path / "report.html"
    render_html(report, page, "report.png")
    text = page.read_text()
    assert "<script>x</script>" not in text and "&lt;script&gt;x&lt;/script&gt;" in text
    assert "14 of the 28 days are not loaded" in text
    assert f"Nothing was sent on {quiet:%-d %b}" in text
    assert "Nothing in these four weeks on: SMS (the workspace has campaigns there)." in text
    assert "Revenue (EUR)" in text and "Push" in text and ">PUSH<" not in text
    assert "nothing loaded before" in text  # the 28-day tiles
    render_png(report, tmp_path / "report.png")
    rgb = matplotlib.image.imread(tmp_path / "report.png")[..., :3]
    assert _has_colour(rgb, CHANNEL_COLOURS["PUSH"]) and _has_colour(rgb, CHANNEL_COLOURS["EMAIL"])
    band, alpha = NOTHING_SENT["facecolor"], NOTHING_SENT["alpha"]  # over white:
    blended = "#" + "".join(f"{round(255 - alpha * (255 - int(band[i:i + 2], 16))):02x}"
                            for i in (1, 3, 5))  # fmt: skip
    assert _has_colour(rgb, blended)  # the quiet day's band


def test_a_channels_colour_is_the_same_in_every_workspace():
    assert channel_colour("PUSH") == CHANNEL_COLOURS["PUSH"]
    assert channel_colour("NEW_CHANNEL") == channel_colour("NEW_CHANNEL")  # by name, not rank
    assert channel_name("INAPP") == "In-app" and channel_name(None).startswith("Unknown")
    assert (count(11826.0), money(1234.5, "EUR"), compact(2_500_000)) == (
        "11,826", "1,234.50 EUR", "2.5M",
    )  # fmt: skip
    assert (compact(999_999), compact(999.6), compact(405_999)) == ("1M", "1k", "406k")
    assert (change(90, 100), change(5, 0), change(0, 0), change(1, None)) == (
        "−10%", "new", "±0%", "",
    )  # fmt: skip


def test_the_report_shows_top_flows_with_their_steps_in_order(
    sandbox, write_workspaces, database, limiter_dir, tmp_path, monkeypatch
):
    from moestats_dagster.sandbox.flows import flows_of

    monkeypatch.delenv("MOESTATS_REPORTS_PATH", raising=False)
    monkeypatch.setenv("TEST_V5", "sandbox-campaigns-key-alpha")
    small = {"attribution_types": ["VIEW_THROUGH"], "metric_types": ["TOTAL"]}
    path = write_workspaces(sandbox, {"id": "WS_ALPHA", "api_key": ALPHA_KEY, "flows": "auto",
                                      "campaigns_api_key_env": "TEST_V5", **small})  # fmt: skip
    defs = build(path, database, limiter_dir)
    instance = DagsterInstance.ephemeral()
    for day in DAYS[:2]:
        defs.resolve_job_def(JOB_NAME).execute_in_process(
            partition_key=partition_key(day, "WS_ALPHA"), instance=instance, run_config=QUIET
        )
    result = defs.resolve_job_def(CAMPAIGNS_JOB).execute_in_process(
        partition_key="WS_ALPHA", instance=instance, run_config=QUIET
    )
    [report] = [m.materialization for m in result.get_asset_materialization_events()
                if m.asset_key.path[-1] == "campaign_report"]  # fmt: skip
    flows = {f.name: f for f in flows_of("WS_ALPHA", 6)}
    table = report.metadata["top_flows"].value
    shown = [r.data for r in table.records]
    assert shown and {r["flow"] for r in shown} <= set(flows)
    first = flows[shown[0]["flow"]]
    steps = [r["step"] for r in shown if r["flow"] == first.name]
    live = [c.campaign_id for c in first.versions[-1].steps]
    assert len(steps) == len(first.campaigns())  # every version's steps, the live ones first
    with connection(database) as conn:
        names = dict(conn.execute("SELECT campaign_id, any_value(campaign_name) FROM "
                                  "moestats.flow_campaigns GROUP BY 1").fetchall())  # fmt: skip
    assert steps[: len(live)] == [names[c] for c in live]
    page = (tmp_path / "reports" / "WS_ALPHA" / "report.html").read_text()
    assert "Top 5 flows by conversions" in page and first.name in page


HOSTILE = "Get $5 ^_^ get $10 \\ 50% off"  # marketers write prices in names


def test_the_chart_draws_names_from_upstream_literally(tmp_path, monkeypatch):
    """`$…$` is math to matplotlib: a campaign or channel named with prices broke the chart."""
    import matplotlib.text

    loaded = [LAST - dt.timedelta(days=n) for n in range(3)]
    rows = [(day, "c1", HOSTILE, "NEW_$CH^_", 100, 90, 10, 2, 12.5) for day in loaded]
    report = build_report(_summary(rows), "summary", "W", "TOTAL", "VIEW_THROUGH",
                          loaded=loaded, campaigns="campaigns")  # fmt: skip
    report.silent_channels = [HOSTILE]
    drawn: list[str] = []
    real_draw = matplotlib.text.Text.draw

    def draw(self, renderer):  # what each text shows once laid out (the test only watches)
        drawn.append(self.get_text())
        return real_draw(self, renderer)

    monkeypatch.setattr(matplotlib.text.Text, "draw", draw)
    render_png(report, tmp_path / "report.png")
    assert any(HOSTILE in t for t in drawn)  # as written, `$` and all
    assert any("New $ch^ " in t for t in drawn)  # the channel's name
    assert matplotlib.image.imread(tmp_path / "report.png").shape[1] == 1100


@pytest.mark.parametrize(
    ("failure", "said"),
    [(RuntimeError("a font went missing"), "RuntimeError: a font went missing"),
     (MemoryError(), "MemoryError")],  # no message: still said, the page still written
    ids=["with a message", "without"],
)  # fmt: skip
def test_a_chart_that_fails_leaves_the_page_and_the_numbers(
    sandbox, write_workspaces, database, limiter_dir, tmp_path, monkeypatch, failure, said
):
    import moestats_dagster.report.chart as chart

    def broken(*args, **kwargs):
        raise failure

    monkeypatch.setattr(chart, "render_png", broken)
    monkeypatch.delenv("MOESTATS_REPORTS_PATH", raising=False)
    small = {"attribution_types": ["VIEW_THROUGH"], "metric_types": ["TOTAL"]}
    defs = build(write_workspaces(sandbox, {"id": "WS_ALPHA", "api_key": ALPHA_KEY, **small}),
                 database, limiter_dir)  # fmt: skip
    instance = DagsterInstance.ephemeral()
    defs.resolve_job_def(JOB_NAME).execute_in_process(
        partition_key=partition_key(DAYS[0], "WS_ALPHA"), instance=instance, run_config=QUIET
    )
    result = defs.resolve_job_def(CAMPAIGNS_JOB).execute_in_process(
        partition_key="WS_ALPHA", instance=instance, run_config=QUIET
    )
    [report] = [m.materialization for m in result.get_asset_materialization_events()
                if m.asset_key.path[-1] == "campaign_report"]  # fmt: skip
    assert report.metadata["chart_failed"].value == said
    assert report.metadata["top_by_conversions"].value.records
    page = (tmp_path / "reports" / "WS_ALPHA" / "report.html").read_text()
    assert f"The chart could not be drawn ({said})" in page
    assert "Top 10 campaigns by conversions" in page


def test_the_tiles_labels_never_overlap_their_values():
    """Long values ("406k EUR"), big changes (+188%) and a partly loaded period: every text the
    tiles draw has a box of its own."""
    import matplotlib.pyplot as plt

    from moestats_dagster.report import chart

    loaded = [LAST - dt.timedelta(days=n) for n in range(7)] + [LAST - dt.timedelta(days=20)]
    big = (999_999, 888_888, 77_777, 66_666, 405_999.0)  # the latest day: +188% on the one before
    rows = [(day, "c1", "A campaign", "EMAIL", *(big if day == LAST else
             (347_222, 308_642, 27_006, 23_148, 140_972.0))) for day in loaded]  # fmt: skip
    report = build_report(_summary(rows), "summary", "W", "TOTAL", "VIEW_THROUGH",
                          loaded=loaded, currency="EUR")  # fmt: skip
    fig = plt.figure(figsize=(11, 8), dpi=100)
    try:
        ax = fig.add_axes((0.06, 0.5, 0.92, 0.3))
        chart._tiles(ax, report)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in ax.texts if t.get_text()]
    finally:
        plt.close(fig)
    texts = [t for t, _ in boxes]
    assert any("EUR" in t for t in texts) and any("days loaded" in t for t in texts)
    assert any(t.startswith("+") and t.endswith("%") for t in texts)
    clashes = [(a, b) for i, (a, box_a) in enumerate(boxes) for b, box_b in boxes[i + 1:]
               if box_a.overlaps(box_b)]  # fmt: skip
    assert not clashes, clashes
