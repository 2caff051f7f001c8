"""Storage on DuckLake: runs beside a reader, concurrent writers, and a dashboard query over a year.

Partitions are real: the sandbox generator's payloads for a day, normalized as a run would, and
published with `replace_slices` (the five slices in one transaction), in a fresh lake per part.
"""

from __future__ import annotations

import datetime as dt
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks import tiny
from moestats_dagster.lakehouse.lake import Lake, connect
from moestats_dagster.lakehouse.warehouse import connection, replace_slices
from moestats_dagster.model.frames import campaigns_frame, raw_frame
from moestats_dagster.model.normalize import normalize_partition
from moestats_dagster.model.schemas import CAMPAIGN_STATS_RAW, CAMPAIGNS, TABLES
from moestats_dagster.moengage import ATTRIBUTION_TYPES, METRIC_TYPES, DayStats
from moestats_dagster.sandbox.generator import (
    campaign_entries,
    campaign_meta,
    campaigns_on,
    make_campaign,
)

START = dt.date(2024, 1, 1)
WORKSPACES = ("WS_ALPHA", "WS_BETA", "WS_GAMMA")


def partition(workspace: str, day: dt.date) -> dict[str, pd.DataFrame]:
    """The five frames of one day x workspace, all 10 metric x attribution combinations."""
    campaigns = campaigns_on(workspace, day)
    stats = [
        DayStats(day, m, a, len(campaigns), {
            c.campaign_id: campaign_entries(workspace, c, day.isoformat(), m, a) for c in campaigns
        })
        for m in METRIC_TYPES
        for a in ATTRIBUTION_TYPES
    ]  # fmt: skip
    raw = raw_frame(
        stats, workspace_id=workspace, stat_date=day, fetched_at=dt.datetime.now(dt.UTC)
    )
    rows = raw[["metric_type", "attribution_type", "campaign_id", "payload"]].itertuples(
        index=False, name=None
    )
    frames = normalize_partition(
        rows, workspace_id=workspace, stat_date=day, attribution_order=ATTRIBUTION_TYPES
    )
    return {CAMPAIGN_STATS_RAW.name: raw, **frames}


def publish(lake: str, workspace: str, day: dt.date, frames: dict[str, pd.DataFrame]) -> None:
    with connection(lake) as conn:
        replace_slices(conn, frames, workspace_id=workspace, stat_date=day)


READER = """
import sys, time
from moestats_dagster.lakehouse.lake import Lake, connect
conn = connect(Lake.at(sys.argv[1]), read_only=True)
print("ready", flush=True)
ok = failed = 0
stop = time.monotonic() + float(sys.argv[2])
while time.monotonic() < stop:
    try:
        conn.execute("SELECT workspace_id, sum(sent) FROM moestats.campaign_daily_summary "
                     "GROUP BY ALL").fetchall()
        ok += 1
    except Exception:
        failed += 1
print(ok, failed, flush=True)
"""


def reader_beside_runs(tmp: Path, n: int = 20) -> dict:
    days = [START + dt.timedelta(days=i) for i in range(2 * n)]
    frames = {d: partition("WS_ALPHA", d) for d in days}
    lake = str(tmp / "reader")
    publish(lake, "WS_ALPHA", days[0], frames[days[0]])  # the lake exists before the reader
    started = time.perf_counter()
    for day in days[1:n]:
        publish(lake, "WS_ALPHA", day, frames[day])
    alone = time.perf_counter() - started
    reader = subprocess.Popen([sys.executable, "-c", READER, lake, "600"],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert reader.stdout.readline().strip() == "ready"
    started = time.perf_counter()
    for day in days[n:]:
        publish(lake, "WS_ALPHA", day, frames[day])
    beside = time.perf_counter() - started
    reader.terminate()
    reader.wait()
    reads = _count_reads(lake, seconds=beside)
    out = {"partitions": n - 1 if n > 1 else n, "seconds_alone": round(alone, 2),
           "seconds_beside_reader": round(beside, 2), **reads}  # fmt: skip
    print(f"  {n} partitions published: {alone:.2f} s alone, {beside:.2f} s beside a reader "
          f"({reads['reads']} reads, {reads['failed_reads']} failed)", flush=True)  # fmt: skip
    return out


def _count_reads(lake: str, seconds: float) -> dict:
    """A reader's success count over the same time, while one more writer publishes."""
    frames = partition("WS_BETA", START)
    reader = subprocess.Popen([sys.executable, "-c", READER, lake, str(max(seconds, 2.0))],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert reader.stdout.readline().strip() == "ready"
    day = START
    while reader.poll() is None:
        publish(lake, "WS_BETA", day, frames)
    ok, failed = map(int, reader.stdout.readline().split())
    return {"reads": ok, "failed_reads": failed}


WRITER = """
import datetime as dt, pickle, sys, time
from benchmarks.storage import partition, publish
ws, lake, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
frames = [partition(ws, dt.date(2024, 1, 1) + dt.timedelta(days=i)) for i in range(n)]
print("ready", flush=True)
sys.stdin.readline()
started = time.perf_counter()
for i, f in enumerate(frames):
    publish(lake, ws, dt.date(2024, 1, 1) + dt.timedelta(days=i), f)
print(time.perf_counter() - started, flush=True)
"""


def concurrent_writers(tmp: Path, n: int = 10) -> dict:
    lake = str(tmp / "writers")
    with connection(lake):
        pass
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, ws, lake, str(n)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).parents[1])
             for ws in WORKSPACES]  # fmt: skip
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    started = time.perf_counter()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = [p.communicate(timeout=600) for p in procs]
    wall = time.perf_counter() - started
    ok = sum(p.returncode == 0 for p in procs)
    with connection(lake) as conn:
        stored = conn.execute(
            "SELECT count(DISTINCT (workspace_id, stat_date)) FROM moestats.campaign_stats_raw"
        ).fetchall()[0][0]
    expected = sum(bool(campaigns_on(ws, START + dt.timedelta(days=i)))
                   for ws in WORKSPACES for i in range(n))  # fmt: skip
    out = {"writers": len(procs), "partitions_each": n, "succeeded": ok,
           "partitions_stored": stored, "partitions_with_campaigns": expected, "seconds": round(wall, 2),
           "partitions_per_second": round(len(procs) * n / wall, 2),
           "per_writer_seconds": [round(float(o[0].split()[-1]), 2) for o in outs if o[0]]}  # fmt: skip
    print(f"  {len(procs)} writer processes x {n} partitions: {ok}/{len(procs)} succeeded, "
          f"{stored} of {expected} non-empty partitions stored, {wall:.1f} s ({out['partitions_per_second']} "
          "partitions/s)", flush=True)  # fmt: skip
    return out


def dashboard_over_a_year(tmp: Path, days: int = 365) -> dict:
    lake = str(tmp / "year")
    started = time.perf_counter()
    rows = 0
    with connection(lake) as conn:
        for ws in WORKSPACES:
            universe = [make_campaign(ws, i) for i in range(80)]
            meta = campaigns_frame([campaign_meta(ws, c) for c in universe], workspace_id=ws,
                                   fetched_at=dt.datetime.now(dt.UTC))  # fmt: skip
            replace_slices(conn, {CAMPAIGNS.name: meta}, workspace_id=ws)
            for month_start in range(0, days, 31):  # one transaction per workspace-month
                month = [partition(ws, START + dt.timedelta(days=d))
                         for d in range(month_start, min(month_start + 31, days))]  # fmt: skip
                conn.execute("BEGIN TRANSACTION")
                for name in month[0]:
                    frame = pd.concat([m[name] for m in month], ignore_index=True)
                    conn.register("incoming", frame)
                    conn.execute(f"INSERT INTO {TABLES[name].in_catalog('lake')} BY NAME "
                                 "SELECT * FROM incoming")  # fmt: skip
                    conn.unregister("incoming")
                    rows += len(frame)
                conn.execute("COMMIT")
    load = time.perf_counter() - started
    last = START + dt.timedelta(days=days - 1)
    queries = {
        "last 30 days by workspace x channel": f"""
            SELECT workspace_id, channel, sum(sent) AS sent, sum(delivered) AS delivered,
                   sum(clicks) AS clicks, sum(conversions_view_through) AS conversions,
                   sum(revenue_view_through) AS revenue
            FROM moestats.campaign_daily_summary
            WHERE metric_type = 'TOTAL' AND stat_date > DATE '{last}' - INTERVAL 30 DAY
            GROUP BY ALL ORDER BY revenue DESC NULLS LAST""",
        "a year by month x workspace": """
            SELECT workspace_id, date_trunc('month', stat_date) AS month, sum(sent) AS sent,
                   sum(conversions_view_through) AS conversions
            FROM moestats.campaign_daily_summary WHERE metric_type = 'TOTAL'
            GROUP BY ALL ORDER BY ALL""",
        "top 10 parent campaigns of the year": """
            SELECT workspace_id, campaign_id, any_value(campaign_name) AS name,
                   sum(conversions_view_through) AS conversions
            FROM moestats.parent_campaign_daily_summary WHERE metric_type = 'TOTAL'
            GROUP BY ALL ORDER BY conversions DESC NULLS LAST LIMIT 10""",
    }
    reader = connect(Lake.at(lake), read_only=True)
    timings = {}
    for name, sql in queries.items():
        runs = []
        for _ in range(3):
            t = time.perf_counter()
            reader.execute(sql).fetchall()
            runs.append(time.perf_counter() - t)
        timings[name] = round(statistics.median(runs), 3)
        print(f"  year x 3 workspaces ({rows:,} rows): {name}: {timings[name]} s", flush=True)
    reader.close()
    return {"days": days, "workspaces": len(WORKSPACES), "rows": rows,
            "load_seconds": round(load, 1), "query_seconds": timings}  # fmt: skip


def run() -> dict:
    small = tiny()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        return {
            "reader_beside_runs": reader_beside_runs(root, 3 if small else 20),
            "concurrent_writers": concurrent_writers(root, 2 if small else 10),
            "dashboard_over_a_year": dashboard_over_a_year(root, 31 if small else 365),
        }
