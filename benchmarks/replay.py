"""Replay: rebuild the four tables from a year of stored raw partitions, without the API."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import time
from pathlib import Path

from benchmarks import tiny
from moestats_dagster.lakehouse.warehouse import connection, read_slice, replace_slices
from moestats_dagster.model.frames import raw_frame
from moestats_dagster.model.normalize import normalize_partition
from moestats_dagster.model.schemas import CAMPAIGN_STATS_RAW
from moestats_dagster.moengage import ATTRIBUTION_TYPES, METRIC_TYPES, DayStats
from moestats_dagster.sandbox.generator import campaign_entries, campaigns_on

WORKSPACE = "WS_ALPHA"
START = dt.date(2024, 1, 1)


def _store_year(database: str, days: int) -> int:
    """Raw slices of `days` days as the raw asset would write them (all 10 combinations)."""
    rows = 0
    with connection(database) as conn:
        for n in range(days):
            day = START + dt.timedelta(days=n)
            campaigns = campaigns_on(WORKSPACE, day)
            stats = [
                DayStats(
                    day,
                    m,
                    a,
                    len(campaigns),
                    {
                        c.campaign_id: campaign_entries(WORKSPACE, c, day.isoformat(), m, a)
                        for c in campaigns
                    },
                )  # fmt: skip
                for m in METRIC_TYPES
                for a in ATTRIBUTION_TYPES
            ]
            frame = raw_frame(stats, workspace_id=WORKSPACE, stat_date=day,
                              fetched_at=dt.datetime.now(dt.UTC))  # fmt: skip
            replace_slices(conn, {CAMPAIGN_STATS_RAW.name: frame}, workspace_id=WORKSPACE,
                           stat_date=day)  # fmt: skip
            rows += len(frame)
    return rows


def run(days: int = 365) -> dict:
    days = 3 if tiny() else days
    with tempfile.TemporaryDirectory() as tmp:
        database = str(Path(tmp) / "replay-lake")
        raw_rows = _store_year(database, days)
        size_mb = sum(f.stat().st_size for f in Path(database).rglob("*") if f.is_file()) / 1e6
        started = time.perf_counter()
        out_rows = 0
        with connection(database) as conn:
            for n in range(days):
                day = START + dt.timedelta(days=n)
                raw = read_slice(conn, CAMPAIGN_STATS_RAW, workspace_id=WORKSPACE, stat_date=day)
                frames = normalize_partition(
                    raw[["metric_type", "attribution_type", "campaign_id", "payload"]].itertuples(
                        index=False, name=None
                    ),
                    workspace_id=WORKSPACE,
                    stat_date=day,
                    attribution_order=ATTRIBUTION_TYPES,
                )
                replace_slices(conn, frames, workspace_id=WORKSPACE, stat_date=day)
                out_rows += sum(len(f) for f in frames.values())
        seconds = time.perf_counter() - started
    result = {
        "days": days,
        "raw_rows": raw_rows,
        "lake_mb": round(size_mb, 1),
        "rows_written": out_rows,
        "seconds": round(seconds, 1),
        "ms_per_partition": round(seconds / days * 1000, 1),
    }
    print(f"  replay: {days} raw partitions ({raw_rows} raw rows) -> {out_rows} table rows "
          f"in {result['seconds']}s ({result['ms_per_partition']} ms/partition)", flush=True)  # fmt: skip
    return result


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
