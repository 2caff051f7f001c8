"""The per-workspace report: rendered from sandbox data to a PNG that is not blank, and HTML."""

from __future__ import annotations

import base64
import datetime as dt
import io

import matplotlib.image
from dagster import DagsterInstance

from moestats_dagster.build import CAMPAIGNS_JOB, JOB_NAME
from moestats_dagster.partitions import partition_key
from moestats_dagster.warehouse import connection

from .conftest import ALPHA_KEY
from .helpers import build

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
        metadata["last_day"].value == "2024-12-05" and metadata["first_day"].value == "2024-12-01"
    )

    # the chart: a real PNG with ink on it, the same one the UI shows inline
    pixels = matplotlib.image.imread(folder / "report.png")
    height, width = pixels.shape[:2]
    assert (height, width) == (1200, 1000)
    rgb = pixels[..., :3]
    ink = (rgb.sum(axis=2) < 2.7).mean()  # share of pixels that are not (near) white
    assert ink > 0.02, ink
    colored = ((rgb.max(axis=2) - rgb.min(axis=2)) > 0.2).mean()  # the channel lines
    assert colored > 0.002, colored
    inline = metadata["chart"].value
    assert inline.startswith("![WS_ALPHA: 2024-12-01 to 2024-12-05")
    png = base64.b64decode(inline.split("base64,", 1)[1].rstrip(")"))
    assert png == (folder / "report.png").read_bytes()
    assert matplotlib.image.imread(io.BytesIO(png), format="png").shape == pixels.shape

    # the page: the chart and the top campaigns, by name, matching the warehouse
    page = (folder / "report.html").read_text()
    assert '<img src="report.png"' in page
    with connection(database) as conn:
        top = conn.execute(
            "SELECT campaign_name, sum(conversions_view_through) AS c "
            "FROM moestats.campaign_daily_summary WHERE workspace_id = 'WS_ALPHA' "
            "AND metric_type = 'TOTAL' GROUP BY ALL ORDER BY c DESC, any_value(campaign_id) "
            "LIMIT 1"
        ).fetchone()
    assert top[0] and top[0] in page
    assert top[0] in metadata["top_by_conversions"].value
