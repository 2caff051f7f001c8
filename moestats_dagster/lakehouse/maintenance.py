"""Lake maintenance: merge small files, expire old snapshots, delete what nothing references.

Every publish writes a few small Parquet files and a snapshot; nothing merges or removes them
unless asked, so a year of nightly runs leaves thousands of small files, a catalog that grows
with every snapshot, and the files of killed runs. DuckLake's own functions do the work, in the
order its `CHECKPOINT` runs them:

1. `ducklake_flush_inlined_data`: rows DuckLake 1.0 kept in the catalog (an insert or delete of
   up to 10 rows is inlined there rather than written as a Parquet file) become Parquet files;
2. `ducklake_merge_adjacent_files`: small files of a table become larger ones (new files; the
   old ones stay referenced by older snapshots), and `ducklake_rewrite_data_files` rewrites the
   files a publish's deletes have mostly emptied;
3. `ducklake_expire_snapshots(older_than => now() - keep)`: snapshots older than the window go,
   and with them time travel to those points;
4. `ducklake_cleanup_old_files(cleanup_all => true)`: files no remaining snapshot references;
5. `ducklake_delete_orphaned_files(older_than => now() - grace)`: files in the data path that
   the catalog never recorded (a run killed after writing, before committing).

The steps are called one by one rather than as `CHECKPOINT`, which takes its windows from
options stored in the catalog (for every reader and writer, until changed): here the window is
`keep_snapshots_days` from the run's own clock, and cleanup takes every unreferenced file at once.

All of it under the lake's maintenance lock, exclusive (lake_locks.py): no publish is in flight
while it runs — a publish's files are orphans until it commits — and publishes wait for it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from moestats_dagster.lakehouse.lake import LAKE, Lake
from moestats_dagster.lakehouse.lake_locks import maintenance_lock
from moestats_dagster.lakehouse.warehouse import connection

ORPHAN_GRACE = dt.timedelta(hours=1)  # a file younger than this may belong to a slow publish


@dataclass(frozen=True)
class LakeSize:
    files: int  # Parquet files the current snapshot reads
    stored_files: int  # Parquet files the catalog still tracks (older snapshots' included)
    snapshots: int
    megabytes: float  # of the current snapshot's files

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class MaintenanceResult:
    before: LakeSize
    after: LakeSize
    files_on_disk_before: int | None  # a local data folder only
    files_on_disk_after: int | None
    keep_days: int

    def as_dict(self) -> dict:
        return {
            "before": self.before.as_dict(),
            "after": self.after.as_dict(),
            "files_on_disk_before": self.files_on_disk_before,
            "files_on_disk_after": self.files_on_disk_after,
            "keep_days": self.keep_days,
        }


def lake_size(conn: duckdb.DuckDBPyConnection) -> LakeSize:
    meta = f"__ducklake_metadata_{LAKE}"
    files, size = conn.execute(
        f"SELECT count(*), coalesce(sum(file_size_bytes), 0) FROM {meta}.ducklake_data_file "
        "WHERE end_snapshot IS NULL"
    ).fetchone()
    [(stored,)] = conn.execute(f"SELECT count(*) FROM {meta}.ducklake_data_file").fetchall()
    [(snapshots,)] = conn.execute(f"SELECT count(*) FROM {meta}.ducklake_snapshot").fetchall()
    return LakeSize(int(files), int(stored), int(snapshots), round(size / 1e6, 2))


def files_on_disk(lake: Lake) -> int | None:
    folder = Path(lake.data_path)
    if "://" in lake.data_path or not folder.is_dir():
        return None
    return sum(1 for _ in folder.rglob("*.parquet"))


# A history load publishes five small files per day: past this many files in the current
# snapshot, a run of several days merges them when it ends (merge_small_files).
MERGE_PAST_FILES = 100


def merge_small_files(
    conn: duckdb.DuckDBPyConnection, lock_seconds: float, past_files: int | None = None
) -> tuple[int, int] | None:
    """Step 1 of `maintain` alone, when the current snapshot reads more than `past_files` files:
    the (files before, files after) merge, or None when there were few enough.

    For a long first load: every query and publish reads the file list of the tables it touches,
    so per-day costs grew with the history (docs/benchmarks.md, "Measurements behind the
    code"). A merge only rewrites the files written since the last one, under the
    maintenance lock like `maintain`; the files it replaces stay on disk for time travel until
    the weekly maintenance expires their snapshots and cleans them up."""
    before = lake_size(conn).files
    if before <= (MERGE_PAST_FILES if past_files is None else past_files):
        return None
    with maintenance_lock(conn, lock_seconds):
        conn.execute(f"CALL ducklake_merge_adjacent_files('{LAKE}')")
    return before, lake_size(conn).files


def maintain(
    lake: Lake | str,
    keep_days: int = 30,
    lock_seconds: float = 600.0,
    now: dt.datetime | None = None,
) -> MaintenanceResult:
    """Merge, expire (snapshots older than `keep_days`), clean up and delete orphans."""
    lake = lake if isinstance(lake, Lake) else Lake.from_env(lake)
    now = now or dt.datetime.now(dt.UTC)
    expire_before = (now - dt.timedelta(days=keep_days)).replace(tzinfo=None)
    orphans_before = (now - ORPHAN_GRACE).replace(tzinfo=None)
    with connection(lake, lock_seconds) as conn, maintenance_lock(conn, lock_seconds):
        conn.execute("RESET threads")  # a run's connection has one; merging uses every core
        before, disk_before = lake_size(conn), files_on_disk(lake)
        conn.execute(f"CALL ducklake_flush_inlined_data('{LAKE}')")
        conn.execute(f"CALL ducklake_merge_adjacent_files('{LAKE}')")
        conn.execute(f"CALL ducklake_rewrite_data_files('{LAKE}')")
        conn.execute(
            f"CALL ducklake_expire_snapshots('{LAKE}', older_than => ?::TIMESTAMP)",
            [expire_before],
        )
        conn.execute(f"CALL ducklake_cleanup_old_files('{LAKE}', cleanup_all => true)")
        conn.execute(
            f"CALL ducklake_delete_orphaned_files('{LAKE}', older_than => ?::TIMESTAMP)",
            [orphans_before],
        )
        after = lake_size(conn)
    return MaintenanceResult(before, after, disk_before, files_on_disk(lake), keep_days)
