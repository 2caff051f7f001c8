"""The DuckDB warehouse: atomic slice replacement, lock patience, and killed writers."""

from __future__ import annotations

import datetime as dt
import sqlite3
import subprocess
import sys
import time

import pandas as pd
import pytest

from moestats_dagster.lakehouse.lake import (
    CatalogTooNew,
    Lake,
    LakeDamaged,
    WarehouseNotFound,
    catalog_format,
    connect,
)
from moestats_dagster.lakehouse.warehouse import connection, read_slice, replace_slices
from moestats_dagster.model.schemas import CONVERSION_GOAL_STATS, FAILURE_BREAKDOWN
from moestats_dagster.orchestration.lib.doctor import lake_versions
from moestats_dagster.orchestration.lib.run_tags import workspace_of
from moestats_dagster_tests.racers import (
    DAY,
    failures,
    first_writes_at_once,
    publishes_of_one_new_day_at_once,
    summary_views_replaced_at_once,
    without_inlining,
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
    other_day = failures(1).assign(stat_date=pd.Timestamp("2024-12-03"))  # a timestamp: parsed
    one_off = failures(1, 2, 3)  # the table's own dates, one of them the next day
    one_off.loc[2, "stat_date"] = DAY + dt.timedelta(days=1)
    missing = failures(1, 2)
    missing.loc[1, "stat_date"] = None
    for frame in (other_day, one_off, missing):
        with connection(database) as conn, pytest.raises(ValueError, match="outside partition"):
            replace_slices(conn, {"failure_breakdown": frame}, workspace_id="W", stat_date=DAY)
    assert stored(database) == []


READER = """
import sys, time
from moestats_dagster.lakehouse.lake import Lake, connect
conn = connect(Lake.at(sys.argv[1]), read_only=True)
print("reading", flush=True)
seen = set()
stop = time.monotonic() + float(sys.argv[2])
while time.monotonic() < stop:
    rows = conn.execute(
        "SELECT list(count ORDER BY reason) FROM moestats.failure_breakdown"
    ).fetchall()[0][0]
    seen.add(tuple(rows or ()))
print(sorted(seen), flush=True)
"""


def test_a_reader_held_open_blocks_no_writer_and_sees_whole_slices(database):
    with connection(database) as conn:
        replace_slices(conn, {"failure_breakdown": failures(1, 1)}, workspace_id="W", stat_date=DAY)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, database, "4"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert reader.stdout.readline().strip() == "reading"
        started = time.monotonic()
        for n in range(2, 7):  # five publishes while the notebook-like reader stays open
            with connection(database) as conn:
                replace_slices(
                    conn, {"failure_breakdown": failures(n, n)}, workspace_id="W", stat_date=DAY
                )
        assert time.monotonic() - started < 30  # no lock wait: nothing like the 10 min before
        seen = reader.stdout.readline()
    finally:
        reader.kill()
        reader.wait()
    assert stored(database) == [6, 6]
    assert all(len(set(rows)) == 1 for rows in eval(seen))  # never half of one publish


WRITER = """
import datetime as dt, sys
import pandas as pd
from moestats_dagster.lakehouse.warehouse import connection, replace_slices
from moestats_dagster_tests.racers import failures
for n in range(5):
    with connection(sys.argv[1]) as conn:
        frame = failures(n, n).assign(workspace_id=sys.argv[2])
        replace_slices(conn, {"failure_breakdown": frame}, workspace_id=sys.argv[2],
                       stat_date=dt.date(2024, 12, 2))
print("done", flush=True)
"""


def test_concurrent_writers_of_different_partitions_all_succeed(database):
    with connection(database):
        pass
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, database, ws], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for ws in ("W1", "W2", "W3")
    ]  # fmt: skip
    outs = [w.communicate(timeout=120) for w in writers]
    assert [o[0].strip() for o in outs] == ["done"] * 3, [o[1][-500:] for o in outs]
    with connection(database) as conn:
        for ws in ("W1", "W2", "W3"):
            frame = read_slice(conn, FAILURE_BREAKDOWN, workspace_id=ws, stat_date=DAY)
            assert frame["count"].tolist() == [4, 4]


def test_publishers_racing_on_one_new_day_leave_every_row_once(tmp_path):
    lake = Lake.at(tmp_path / "lake")
    assert publishes_of_one_new_day_at_once([lake]) == [["ok"] * 4]
    with connection(lake) as conn:
        frame = read_slice(conn, FAILURE_BREAKDOWN, workspace_id="W", stat_date=DAY)
    assert frame["count"].tolist() == [5, 6]


def test_runs_replacing_the_summary_views_at_once_all_succeed(tmp_path):
    # Before: DuckLake failed all but the first commit of a view ("Failed to commit DuckLake
    # transaction"): one summary run of ten after a 90-day backfill of ten workspaces.
    lakes = [Lake.at(tmp_path / f"lake{trial}") for trial in range(2)]
    assert summary_views_replaced_at_once(lakes) == [["ok"] * 4] * 2


def test_first_writers_racing_to_create_the_lake_all_succeed(tmp_path):
    # Before: one trial in three lost "database is locked" setting the catalog's WAL mode.
    lakes = [Lake.at(tmp_path / f"lake{trial}") for trial in range(3)]
    assert first_writes_at_once(lakes) == [["ok"] * 6] * 3
    for lake in lakes:
        with connection(lake) as conn:
            assert read_slice(conn, FAILURE_BREAKDOWN, workspace_id="W", stat_date=DAY).empty


def test_a_reader_of_a_lake_nothing_wrote_is_told_what_to_do(tmp_path):
    with pytest.raises(WarehouseNotFound, match="run `make demo` or materialize a partition"):
        connect(Lake.at(tmp_path / "nothing"), read_only=True)


KILLED_MID_REPLACE = """
import os, signal, sys
from moestats_dagster.lakehouse.lake import Lake, connect
conn = connect(Lake.at(sys.argv[1]))
conn.execute("BEGIN TRANSACTION")
conn.execute("DELETE FROM moestats.failure_breakdown WHERE workspace_id = 'W'")
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_run_killed_mid_replace_leaves_the_last_good_slice(database):
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
    database = str(tmp_path / 'team "growth" lake')
    replace_slices_in(database, failures(3, 4))
    assert stored(database) == [3, 4]


def replace_slices_in(database: str, frame: pd.DataFrame) -> None:
    with connection(database) as conn:
        replace_slices(conn, {"failure_breakdown": frame}, workspace_id="W", stat_date=DAY)


def test_tables_of_an_earlier_release_gain_the_new_columns_and_keep_their_rows(database):
    conn = connect(Lake.at(database))
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


def _published(tmp_path) -> Lake:
    lake = without_inlining(Lake.at(tmp_path / "lake"))
    with connection(lake) as conn:
        replace_slices(conn, {"failure_breakdown": failures(1, 2)}, workspace_id="W", stat_date=DAY)
    return lake


@pytest.mark.parametrize("loss", ["deleted", "emptied"])
def test_a_lost_catalog_is_not_replaced_by_an_empty_one(tmp_path, loss):
    # Before: the next run created a new, empty catalog beside the data files, and exited 0.
    lake = _published(tmp_path)
    catalog = tmp_path / "lake" / "catalog.sqlite"
    catalog.unlink() if loss == "deleted" else catalog.write_bytes(b"")
    files = sorted((tmp_path / "lake" / "files").rglob("*.parquet"))
    with pytest.raises(LakeDamaged) as info, connection(lake):
        pass
    message = str(info.value)
    assert str(catalog) in message and "from your backup" in message
    assert "move" in message and str(tmp_path / "lake" / "files") in message
    assert sorted((tmp_path / "lake" / "files").rglob("*.parquet")) == files
    assert (not catalog.exists()) if loss == "deleted" else catalog.stat().st_size == 0


def test_a_damaged_catalog_names_itself_and_the_fix(tmp_path):
    lake = _published(tmp_path)
    catalog = tmp_path / "lake" / "catalog.sqlite"
    for extra in catalog.parent.glob("catalog.sqlite-*"):
        extra.unlink()  # the WAL holds the last commits; a torn main file is the case here
    data = catalog.read_bytes()
    catalog.write_bytes(data[: len(data) // 2] + b"\0" * 100)
    for read_only in (False, True):
        with pytest.raises(LakeDamaged, match="is damaged") as info:
            connect(lake, read_only=read_only).close()
        assert str(catalog) in str(info.value) and ".recover" in str(info.value)


def test_a_missing_data_file_is_named_with_its_table_and_repair(tmp_path):
    lake = _published(tmp_path)
    [victim] = (tmp_path / "lake" / "files").rglob("*.parquet")
    victim.unlink()
    new_day = failures(3)
    new_day["stat_date"] = DAY + dt.timedelta(days=1)
    with connection(lake) as conn:  # a new partition whose publish never reads the lost file
        replace_slices(conn, {"failure_breakdown": new_day}, workspace_id="W",
                       stat_date=DAY + dt.timedelta(days=1))  # fmt: skip
    with pytest.raises(LakeDamaged) as info, connection(lake) as conn:  # one that does
        read_slice(conn, FAILURE_BREAKDOWN, workspace_id="W", stat_date=DAY)
    message = str(info.value)
    assert str(victim) in message and "moestats.failure_breakdown" in message
    assert "Restore it from your backup" in message and "backfill" in message


def test_a_catalog_a_newer_duckdb_wrote_is_refused_naming_both_versions(tmp_path, capsys):
    lake = Lake.at(tmp_path / "lake")
    with connection(lake):
        pass
    assert catalog_format(lake) == "1.0"
    with sqlite3.connect(tmp_path / "lake" / "catalog.sqlite") as db:  # as DuckDB 2.0 would
        db.execute("UPDATE ducklake_metadata SET value = '1.1' WHERE key = 'version'")
    for opening in (lambda: connection(lake).__enter__(), lambda: connect(lake, read_only=True)):
        with pytest.raises(CatalogTooNew) as info:
            opening()
        message = str(info.value)
        assert "DuckLake format 1.1" in message and "reads DuckLake formats up to 1.0" in message
        assert "DuckDB 1.5.5" in message and "cannot be moved back" in message
    versions, readable = lake_versions(lake)
    assert not readable and "format 1.1 was written by a newer DuckDB" in versions
