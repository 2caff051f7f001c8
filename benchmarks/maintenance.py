"""A year of daily publishes for 3 workspaces, then lake maintenance: files, MB, snapshots and the
dashboard queries' seconds, before and after.

Each workspace's day is a real sandbox day (fetched over HTTP, normalized), published once per
day of the year with its date changed: 1,095 publishes of the five stats tables, one transaction
each, as the nightly runs make them. Maintenance runs as if 31 days later, so every snapshot but
the last is past the 30-day window.

python -m benchmarks.run --only maintenance   (MOESTATS_BENCH_DAYS=30 for a quick look)
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import time
from pathlib import Path

from benchmarks import tiny
from moestats_dagster.lakehouse.lake import Lake
from moestats_dagster.lakehouse.maintenance import files_on_disk, lake_size, maintain
from moestats_dagster.lakehouse.warehouse import connection, replace_slices
from moestats_dagster.model.frames import raw_frame
from moestats_dagster.model.normalize import normalize_partition, rows_in_chunks
from moestats_dagster.model.schemas import CAMPAIGN_STATS_RAW, NORMALIZED_TABLES
from moestats_dagster.moengage import StatsClient
from moestats_dagster.moengage.client import ATTRIBUTION_TYPES, METRIC_TYPES
from moestats_dagster.sandbox import SandboxApp, SandboxServer
from moestats_dagster.sandbox.app import DEFAULT_WORKSPACES

WORKSPACES = ("WS_ALPHA", "WS_BETA", "WS_GAMMA")
SAMPLE_DAY = dt.date(2024, 12, 3)
QUERIES = {
    "month by campaign (daily summary)": "SELECT campaign_id, sum(sent), sum(clicks) FROM "
    "moestats.campaign_daily_summary WHERE workspace_id = 'WS_ALPHA' AND metric_type = 'TOTAL' "
    "AND stat_date >= DATE '{last}' - 30 GROUP BY ALL ORDER BY 2 DESC NULLS LAST LIMIT 10",
    "year by day (performance)": "SELECT stat_date, sum(sent) FROM moestats.performance_stats "
    "WHERE metric_type = 'TOTAL' GROUP BY ALL ORDER BY 1",
    "a day's raw payloads": "SELECT count(*), sum(length(payload::VARCHAR)) FROM "
    "moestats.campaign_stats_raw WHERE stat_date = DATE '{last}'",
}


def _sample_frames() -> dict[str, dict]:
    """One real day per workspace: the five tables' frames."""
    server = SandboxServer(SandboxApp(list(DEFAULT_WORKSPACES))).start()
    keys = {w.workspace_id: w.api_key for w in DEFAULT_WORKSPACES}
    combos = [(m, a) for m in METRIC_TYPES for a in ATTRIBUTION_TYPES]
    out = {}
    try:
        for ws in WORKSPACES:
            with StatsClient(workspace_id=ws, api_key=keys[ws], base_url=server.url,
                             rate_limit_per_minute=100_000) as client:  # fmt: skip
                days = client.fetch_days(stat_date=SAMPLE_DAY, combinations=combos)
            raw = raw_frame(days, workspace_id=ws, stat_date=SAMPLE_DAY,
                            fetched_at=dt.datetime.now(dt.UTC))  # fmt: skip
            frames = normalize_partition(
                rows_in_chunks(raw, ["metric_type", "attribution_type", "campaign_id", "payload"]),
                workspace_id=ws, stat_date=SAMPLE_DAY, attribution_order=ATTRIBUTION_TYPES,
            )  # fmt: skip
            out[ws] = {
                CAMPAIGN_STATS_RAW.name: raw,
                **{t.name: frames[t.name] for t in NORMALIZED_TABLES},
            }
    finally:
        server.stop()
    return out


def _disk_mb(lake: Lake, conn) -> float:
    if lake.remote:  # the bucket's objects under the lake's prefix
        [(size,)] = conn.execute(
            "SELECT coalesce(sum(size), 0) FROM read_blob(?)", [lake.data_path + "**/*.parquet"]
        ).fetchall()
        return round(size / 1e6, 1)
    return round(sum(p.stat().st_size for p in Path(lake.data_path).rglob("*.parquet")) / 1e6, 1)


def _files(lake: Lake, conn) -> int | None:
    if lake.remote:
        [(n,)] = conn.execute(
            "SELECT count(*) FROM glob(?)", [lake.data_path + "**/*.parquet"]
        ).fetchall()
        return n
    return files_on_disk(lake)


def _measure(lake: Lake, last: dt.date) -> dict:
    with connection(lake) as conn:
        size = lake_size(conn)
        seconds = {}
        for name, sql in QUERIES.items():
            runs = []
            for _ in range(3):
                started = time.perf_counter()
                conn.execute(sql.format(last=last)).fetchall()
                runs.append(time.perf_counter() - started)
            seconds[name] = round(min(runs), 3)
        files, mb = _files(lake, conn), _disk_mb(lake, conn)
    return {"parquet_files_on_disk": files, "mb_on_disk": mb,
            "current_files": size.files, "snapshots": size.snapshots, "query_seconds": seconds}  # fmt: skip


def run() -> dict:
    days = int(os.environ.get("MOESTATS_BENCH_DAYS", "3" if tiny() else "365"))
    with tempfile.TemporaryDirectory() as tmp:
        return year_then_maintenance(Lake.at(Path(tmp) / "lake"), days)


def year_then_maintenance(lake: Lake, days: int) -> dict:
    """`days` of daily publishes for the three workspaces into `lake`, measured before and after
    maintenance (the object-storage benchmark runs it on a bucket)."""
    samples = _sample_frames()
    first = dt.date(2025, 1, 1)
    started = time.perf_counter()
    with connection(lake) as conn:
        for n in range(days):
            day = first + dt.timedelta(days=n)
            for ws in WORKSPACES:
                frames = {}
                for name, frame in samples[ws].items():
                    moved = frame.copy()
                    moved["stat_date"] = moved["stat_date"].map(lambda _d, day=day: day)
                    frames[name] = moved
                replace_slices(conn, frames, workspace_id=ws, stat_date=day)
            if (n + 1) % 30 == 0:
                print(f"  {n + 1} days published", flush=True)
    publish_seconds = time.perf_counter() - started
    last = first + dt.timedelta(days=days - 1)
    before = _measure(lake, last)
    started = time.perf_counter()
    maintain(lake, keep_days=30, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=31))
    maintenance_seconds = round(time.perf_counter() - started, 1)
    after = _measure(lake, last)
    result = {
        "days": days,
        "workspaces": len(WORKSPACES),
        "publishes": days * len(WORKSPACES),
        "seconds_per_publish": round(publish_seconds / (days * len(WORKSPACES)), 3),
        "before": before,
        "after": after,
        "maintenance_seconds": maintenance_seconds,
    }
    print(f"  before maintenance: {before}")
    print(f"  after maintenance ({maintenance_seconds} s): {after}")
    return result
