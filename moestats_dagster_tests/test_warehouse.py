"""The DuckDB warehouse: atomic slice replacement, lock patience, and killed writers."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time

import pandas as pd
import pytest

from moestats_dagster.run_coordinator import workspace_of
from moestats_dagster.schemas import CONVERSION_GOAL_STATS, FAILURE_BREAKDOWN
from moestats_dagster.warehouse import (
    WarehouseLockTimeout,
    connect,
    connection,
    read_slice,
    replace_slices,
)

DAY = dt.date(2024, 12, 2)


def failures(*counts) -> pd.DataFrame:
    n = len(counts)
    return FAILURE_BREAKDOWN.frame(
        {
            "workspace_id": ["W"] * n,
            "stat_date": [DAY] * n,
            "metric_type": ["TOTAL"] * n,
            "campaign_id": ["c"] * n,
            "entry_index": [0] * n,
            "platform": ["EMAIL"] * n,
            "locale": ["all_locales"] * n,
            "variation": ["all_variations"] * n,
            "reason": [f"r{i}" for i in range(n)],
            "count": list(counts),
        },
        length=n,
    )


def stored(database: str) -> list[int]:
    with connection(database) as conn:
        frame = read_slice(conn, FAILURE_BREAKDOWN, workspace_id="W", stat_date=DAY)
    return frame["count"].tolist()


def test_a_failing_insert_keeps_the_previous_slice(database):
    with connection(database) as conn:
        replace_slices(conn, {"failure_breakdown": failures(1, 2)}, workspace_id="W", stat_date=DAY)
        broken = failures(5).astype({"count": "object"})
        broken.loc[0, "count"] = "not a number"
        with pytest.raises(Exception, match="not a number|Conversion"):
            replace_slices(conn, {"failure_breakdown": broken}, workspace_id="W", stat_date=DAY)
    assert stored(database) == [1, 2]


def test_rows_outside_the_partition_are_refused(database):
    other_day = failures(1).assign(stat_date=pd.Timestamp("2024-12-03"))
    with connection(database) as conn, pytest.raises(ValueError, match="outside partition"):
        replace_slices(conn, {"failure_breakdown": other_day}, workspace_id="W", stat_date=DAY)


HOLD = """
import sys, time, duckdb
conn = duckdb.connect(sys.argv[1])
conn.execute("CREATE TABLE IF NOT EXISTS held (x INT)")
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_a_locked_file_is_waited_for_then_written(database):
    with connection(database):
        pass
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, database, "2"], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    started = time.monotonic()
    conn = connect(database, lock_timeout_seconds=60)
    conn.close()
    holder.wait(timeout=30)
    assert time.monotonic() - started > 0.5  # it waited for the other process


def test_a_lock_held_too_long_is_a_clear_error(database):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, database, "10"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(WarehouseLockTimeout, match="stayed locked by another process"):
            connect(database, lock_timeout_seconds=0.5)
    finally:
        holder.kill()
        holder.wait()


KILLED_MID_REPLACE = """
import datetime as dt, os, signal, sys
import duckdb
conn = duckdb.connect(sys.argv[1])
conn.execute("BEGIN TRANSACTION")
conn.execute("DELETE FROM moestats.failure_breakdown WHERE workspace_id = 'W'")
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_run_killed_mid_replace_leaves_the_last_good_slice(tmp_path):
    database = str(tmp_path / "killed.duckdb")  # not named like the schema: plain SQL is fine
    with connection(database) as conn:
        replace_slices(conn, {"failure_breakdown": failures(7)}, workspace_id="W", stat_date=DAY)
    killed = subprocess.run([sys.executable, "-c", KILLED_MID_REPLACE, database], check=False)
    assert killed.returncode == -9
    assert stored(database) == [7]


@pytest.mark.parametrize(
    "tags,workspace",
    [
        ({"dagster/partition/workspace": "WS_A", "dagster/partition": "2024-12-01|WS_A"}, "WS_A"),
        ({"dagster/asset_partition_range_start": "2024-12-01|WS_B",
          "dagster/asset_partition_range_end": "2024-12-04|WS_B"}, "WS_B"),
        ({"dagster/asset_partition_range_start": "2024-12-01|WS_A",
          "dagster/asset_partition_range_end": "2024-12-01|WS_B"}, None),
        ({"dagster/partition": "2024-12-01|WS_C"}, "WS_C"),
        ({}, None),
    ],
)  # fmt: skip
def test_every_launch_path_yields_the_workspace_tag(tags, workspace):
    assert workspace_of(tags) == workspace


def test_a_database_path_with_quotes_is_safe(tmp_path):
    database = str(tmp_path / 'team "growth" warehouse.duckdb')
    replace_slices_in(database, failures(3, 4))
    assert stored(database) == [3, 4]


def replace_slices_in(database: str, frame: pd.DataFrame) -> None:
    with connection(database) as conn:
        replace_slices(conn, {"failure_breakdown": frame}, workspace_id="W", stat_date=DAY)


def test_tables_of_an_earlier_release_gain_the_new_columns_and_keep_their_rows(database):
    import duckdb

    conn = duckdb.connect(database)
    conn.execute("CREATE SCHEMA moestats")
    conn.execute(
        "CREATE TABLE moestats.conversion_goal_stats (workspace_id VARCHAR, stat_date DATE, "
        "metric_type VARCHAR, attribution_type VARCHAR, campaign_id VARCHAR, entry_index INTEGER, "
        "platform VARCHAR, locale VARCHAR, variation VARCHAR, goal_name VARCHAR, "
        "conversions BIGINT, cvr DOUBLE, uplift DOUBLE, extra_metrics JSON)"
    )
    conn.execute(
        "INSERT INTO moestats.conversion_goal_stats VALUES ('W', DATE '2024-12-02', 'TOTAL', "
        "'IN_SESSION', 'c', 0, 'EMAIL', 'all_locales', 'all_variations', 'Goal 1', 7, 1.5, 0.0, NULL)"
    )
    conn.close()
    with connection(database) as conn:
        frame = read_slice(conn, CONVERSION_GOAL_STATS, workspace_id="W", stat_date=DAY)
    assert list(frame.columns) == CONVERSION_GOAL_STATS.names
    row = frame.iloc[0]
    assert row.goal_key == "Goal 1" and row.conversions == 7  # the old key, renamed
    assert pd.isna(row.goal_name) and pd.isna(row.revenue)  # new columns, NULL for old rows
