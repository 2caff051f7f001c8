"""Lake maintenance: fewer files, the same rows, orphans gone, and never beside a publish."""

from __future__ import annotations

import datetime as dt
import os
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance

from moestats_dagster.lakehouse.lake import Lake
from moestats_dagster.lakehouse.lake_locks import WarehouseBusy, maintenance_lock, publish_locks
from moestats_dagster.lakehouse.maintenance import files_on_disk, maintain
from moestats_dagster.lakehouse.warehouse import connection, replace_slices
from moestats_dagster_tests.conftest import ALPHA_KEY
from moestats_dagster_tests.helpers import build
from moestats_dagster_tests.racers import DAY, failures, without_inlining

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _publish_days(lake: Lake, days: int, times: int) -> None:
    with connection(lake) as conn:
        for _ in range(times):
            for n in range(days):
                frame = failures(n, n + 1)
                frame["stat_date"] = [DAY + dt.timedelta(days=n)] * 2
                replace_slices(conn, {"failure_breakdown": frame}, workspace_id="W",
                               stat_date=DAY + dt.timedelta(days=n))  # fmt: skip


def _rows(lake: Lake) -> list:
    with connection(lake) as conn:
        return conn.execute(
            "SELECT stat_date, count FROM moestats.failure_breakdown ORDER BY ALL"
        ).fetchall()


def test_maintenance_merges_expires_and_deletes_orphans_keeping_every_row(
    sandbox, write_workspaces, database, limiter_dir
):
    lake = without_inlining(Lake.at(database))
    _publish_days(lake, days=12, times=3)  # 36 publishes: 36 small files, 37 snapshots
    rows = _rows(lake)
    # what a run killed after writing its file, before committing, leaves behind
    orphan = os.path.join(
        lake.data_path, "moestats", "failure_breakdown", "ducklake-killed.parquet"
    )
    pq.write_table(pa.table({"x": [1]}), orphan)
    hour_ago = time.time() - 7200
    os.utime(orphan, (hour_ago, hour_ago))
    before = files_on_disk(lake)
    assert before >= 37

    defs = build(write_workspaces(sandbox, {"id": "WS_ALPHA", "api_key": ALPHA_KEY},
                                  keep_snapshots_days=1), database, limiter_dir)  # fmt: skip
    job = defs.resolve_job_def("moestats_lake_maintenance")
    # everything is younger than a day: snapshots stay, small files are merged
    result = job.execute_in_process(instance=DagsterInstance.ephemeral(), run_config=QUIET)
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["current_files"].value < metadata["current_files_before"].value
    assert not os.path.exists(orphan)  # the killed run's file is gone
    assert _rows(lake) == rows

    # a week later, by the calendar of the window: old snapshots and their files go
    done = maintain(lake, keep_days=1, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=7))
    assert done.after.snapshots == 1 and done.after.stored_files == done.after.files
    assert done.files_on_disk_after == done.after.files < before / 4
    assert _rows(lake) == rows


def test_maintenance_and_publishes_never_overlap(database):
    lake = Lake.at(database)
    _publish_days(lake, days=1, times=1)
    with (
        connection(lake) as conn,
        publish_locks(conn, "W|2024-12-02", 5),  # a publish in flight
        connection(lake) as other,
        pytest.raises(WarehouseBusy, match="kept publishing"),
        maintenance_lock(other, 0.5),
    ):
        pass
    held, release = threading.Event(), threading.Event()

    def maintaining():
        with connection(lake) as conn, maintenance_lock(conn, 5):
            held.set()
            release.wait(30)

    worker = threading.Thread(target=maintaining)
    worker.start()
    try:
        assert held.wait(30)
        with connection(lake) as conn, pytest.raises(WarehouseBusy, match="maintenance is running"):
            replace_slices(conn, {"failure_breakdown": failures(9, 9)}, workspace_id="W",
                           stat_date=DAY, retry_seconds=0.5)  # fmt: skip
    finally:
        release.set()
        worker.join()
    assert [c for _, c in _rows(lake)] == [0, 1]  # nothing of the refused publish


def test_small_slices_live_in_the_catalog_until_maintenance_writes_them_out(database):
    """DuckLake 1.0 keeps an insert of up to 10 rows in its catalog (no Parquet file for a quiet
    day's two failure rows); readers see them the same, and maintenance flushes them to files."""
    lake = Lake.at(database)
    _publish_days(lake, days=6, times=1)
    rows = _rows(lake)
    assert len(rows) == 12 and files_on_disk(lake) == 0
    maintain(lake, keep_days=0)
    assert _rows(lake) == rows and files_on_disk(lake) >= 1
