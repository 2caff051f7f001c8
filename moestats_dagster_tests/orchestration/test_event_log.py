"""The local instance's event log (dagster.yaml): Dagster's SQLite files, an engine kept per file."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import psutil
from dagster import DagsterEventType, DagsterInstance

from moestats_dagster.orchestration.instance.event_log import (
    KEPT_ENGINES,
    KeptEngineSqliteEventLogStorage,
)
from moestats_dagster_tests.conftest import ALPHA_KEY, SMALL_DAY
from moestats_dagster_tests.helpers import build, run_partition, stats_assets

ROOT = Path(__file__).resolve().parents[2]


def _recorded(instance: DagsterInstance, run_id: str) -> list[tuple]:
    """What a run recorded that the UI shows per partition: materializations and check results."""
    out = []
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            m = event.step_materialization_data.materialization
            out.append(("materialized", m.asset_key.to_user_string(), m.partition))
        elif event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            e = event.event_specific_data
            out.append(("checked", e.asset_key.to_user_string(), e.check_name, e.passed))
    return sorted(out, key=str)


def _checks_stored(instance: DagsterInstance, check_keys) -> dict:
    """Each check's latest execution as the asset-check index holds it (the UI's checks tab)."""
    out = {}
    for key in check_keys:
        (latest,) = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
        out[key.to_user_string()] = (latest.status.value, latest.partition)
    return out


def test_the_repository_instance_records_a_run_as_dagster_s_own_sqlite_storage_does(
    tmp_path, sandbox, write_workspaces, limiter_dir, monkeypatch
):
    """Same events, same partitions, same check results, readable by a new instance on the same
    folder; the engines are kept (one per file written), not made per event."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    ours = DagsterInstance.from_config(str(home))
    storage = ours.event_log_storage
    assert isinstance(storage, KeptEngineSqliteEventLogStorage)
    assert (
        Path(storage._base_dir) == home / "history" / "runs"
    )  # where Dagster's default keeps them
    path = write_workspaces(sandbox, {"id": "WS_ALPHA", "api_key": ALPHA_KEY})

    defs = build(path, str(tmp_path / "lake"), limiter_dir)
    ran = run_partition(defs, SMALL_DAY, "WS_ALPHA", instance=ours)
    (tmp_path / "dagster_default").mkdir()
    theirs = DagsterInstance.local_temp(tempdir=str(tmp_path / "dagster_default"))
    assert type(theirs.event_log_storage).__name__ == "SqliteEventLogStorage"
    ran_default = run_partition(
        build(path, str(tmp_path / "lake2"), limiter_dir), SMALL_DAY, "WS_ALPHA", instance=theirs
    )

    recorded = _recorded(ours, ran.run_id)
    assert recorded == _recorded(theirs, ran_default.run_id)
    assert sum(1 for r in recorded if r[0] == "materialized") == 5
    assert sum(1 for r in recorded if r[0] == "checked") == 24
    check_keys = [k for a in stats_assets(defs) for k in a.check_keys]
    assert len(check_keys) == 24
    stored = _checks_stored(ours, check_keys)
    assert stored == _checks_stored(theirs, check_keys)
    assert {status for status, _ in stored.values()} == {"SUCCEEDED"}
    # the index file answers across runs: the partition and every check's latest result
    partition = f"{SMALL_DAY}|WS_ALPHA"
    raw = next(k for k in ours.get_asset_keys() if k.path[-1] == "campaign_stats_raw")
    assert ours.get_materialized_partitions(raw) == {partition}
    # one engine per file written (the run's own and the index), kept across its many events
    assert set(storage._engines) == {ran.run_id, "index"}
    index_engine = storage._engines["index"]

    # a new instance on the same folder (another process: the UI, the daemon) reads it all
    again = DagsterInstance.from_config(str(home))
    assert _recorded(again, ran.run_id) == recorded
    assert again.get_materialized_partitions(raw) == {partition}
    assert _checks_stored(again, check_keys) == stored
    assert storage._engines["index"] is index_engine


def test_engines_kept_are_bounded_and_a_dropped_one_is_made_again(tmp_path):
    """A daemon reads many runs' files: at most KEPT_ENGINES engines are kept, the least recently
    used dropped (and disposed); a file whose engine was dropped is read again as before."""
    storage = KeptEngineSqliteEventLogStorage(str(tmp_path / "runs"))
    shards = [f"run{n:03d}" for n in range(KEPT_ENGINES + 8)]
    for shard in shards:
        with storage.run_connection(shard) as conn:
            conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS probe (n INTEGER)")
            conn.exec_driver_sql("INSERT INTO probe VALUES (1)")
    assert len(storage._engines) == KEPT_ENGINES
    assert shards[0] not in storage._engines and shards[-1] in storage._engines
    with storage.run_connection(shards[0]) as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM probe").scalar() == 1
    assert next(reversed(storage._engines)) == shards[0]
    # each kept engine keeps one connection: never more databases open than engines kept
    assert len(_open_databases(storage._base_dir)) == KEPT_ENGINES
    storage.dispose()
    assert not storage._engines
    assert _open_databases(storage._base_dir) == set()


def _open_databases(folder: str) -> set[str]:
    """The SQLite databases this process holds open (a database in WAL mode, as Dagster makes
    them, is its file, its -wal and its -shm)."""
    return {
        f.path.removesuffix("-wal").removesuffix("-shm")
        for f in psutil.Process().open_files()
        if f.path.startswith(folder)
    }


WRITE_ELSEWHERE = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=1)  # a held lock would fail it within a second
with conn:
    conn.execute("INSERT INTO probe VALUES (2)")
print(conn.execute("SELECT count(*) FROM probe").fetchone()[0])
"""


def test_a_kept_connection_holds_no_lock_and_sees_other_processes_writes(tmp_path):
    """The connection kept between writes is idle: another process (the daemon, the UI, a run)
    writes the same file at once, and the next read here sees that write."""
    storage = KeptEngineSqliteEventLogStorage(str(tmp_path / "runs"))
    with storage.run_connection("shared") as conn:
        conn.exec_driver_sql("CREATE TABLE probe (n INTEGER)")
        conn.exec_driver_sql("INSERT INTO probe VALUES (1)")
    # kept open between writes
    assert storage.path_for_shard("shared") in _open_databases(storage._base_dir)
    elsewhere = subprocess.run(
        [sys.executable, "-c", WRITE_ELSEWHERE, storage.path_for_shard("shared")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert elsewhere.stdout.strip() == "2"
    with storage.run_connection("shared") as conn:
        assert conn.exec_driver_sql("SELECT sum(n) FROM probe").scalar() == 3
    storage.dispose()
