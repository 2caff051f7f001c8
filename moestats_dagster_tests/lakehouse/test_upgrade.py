"""Lakes written by the release before (DuckDB 1.4.4, DuckLake format 0.3) and `moestats lake
upgrade`: the committed fixtures (fixtures/lake_0_3, see make.py there), a SQLite catalog and a
PostgreSQL one restored into the test server."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from moestats_dagster.lakehouse.lake import (
    WRITES_FORMAT,
    CatalogTooOld,
    Lake,
    LakeMoved,
    catalog_format,
    connect,
)
from moestats_dagster.lakehouse.maintenance import maintain
from moestats_dagster.lakehouse.upgrade import (
    WORK_SCHEMA,
    WORK_SUFFIX,
    UpgradeError,
    census,
    old_row_counts,
    upgrade,
)
from moestats_dagster.lakehouse.warehouse import connection, replace_slices
from moestats_dagster.operations.cli import main
from moestats_dagster.sandbox.app import SandboxWorkspace
from moestats_dagster.sandbox.generator import campaigns_on
from moestats_dagster_tests.conftest import PATIENCE
from moestats_dagster_tests.helpers import build, run_partition
from moestats_dagster_tests.racers import failures

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lake_0_3"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
WRITTEN_AT = {"sqlite": "/tmp/fixgen/sqlite/lake/files/", "postgres": "/tmp/fixgen/pg/lake/files/"}


def sqlite_lake(tmp_path) -> Lake:
    """The SQLite fixture copied to a new folder (so also a lake that moved)."""
    shutil.copytree(FIXTURES / "sqlite", tmp_path / "lake")
    return Lake.at(tmp_path / "lake")


def postgres_lake(tmp_path, postgres_url) -> Lake:
    """The PostgreSQL fixture's dump restored into a fresh database, its files in a folder."""
    folder = tmp_path / "lake"
    shutil.copytree(FIXTURES / "postgres" / "files", folder / "files")
    dump = (FIXTURES / "postgres" / "catalog.sql").read_text()
    dump = dump.replace(WRITTEN_AT["postgres"], str(folder / "files") + os.sep)
    psql = shutil.which("psql") or "/usr/bin/psql"
    subprocess.run([psql, "-q", "-v", "ON_ERROR_STOP=1", postgres_url], input=dump, text=True,
                   check=True, capture_output=True, timeout=PATIENCE)  # fmt: skip
    return Lake.at(folder, postgres_url)


def expected_tables() -> dict[str, tuple[int, str]]:
    return {n: (t["rows"], t["keys_checksum"]) for n, t in EXPECTED["tables"].items()}


def test_a_lake_of_the_release_before_is_refused_in_one_line_naming_the_upgrade(tmp_path):
    lake = sqlite_lake(tmp_path)
    for open_it in (lambda: connect(lake, read_only=True), lambda: connection(lake).__enter__()):
        with pytest.raises(CatalogTooOld) as info:
            open_it()
        message = str(info.value)
        assert "format 0.3" in message and "moestats lake upgrade" in message
        assert "\n" not in message
    assert catalog_format(lake) == "0.3"  # nothing migrated by surprise


def test_a_sqlite_lake_upgrades_with_every_table_equal_then_loads_and_is_maintained(
    tmp_path, sandbox, write_workspaces, monkeypatch, limiter_dir, capsys
):
    lake = sqlite_lake(tmp_path)
    assert main(["lake", "upgrade", "--lake", str(tmp_path / "lake")]) == 0
    out = capsys.readouterr().out
    assert "format 0.3 -> 1.0" in out and "backup of the old catalog" in out
    assert catalog_format(lake) == "1.0"
    backups = list((tmp_path / "lake").glob("catalog.sqlite.format-0.3.*.bak"))
    assert len(backups) == 1 and catalog_format(Lake(f"sqlite:{backups[0]}", "x")) == "0.3"
    with contextlib.closing(connect(lake, read_only=True)) as conn:
        assert census(conn).tables == expected_tables()  # as DuckDB 1.4.4 read them
        for view, rows in EXPECTED["views"].items():
            assert conn.execute(f"SELECT count(*) FROM moestats.{view}").fetchone()[0] == rows

    # the next day loads into it, and maintenance runs over it
    monkeypatch.setenv("TEST_KEY_WS_FIXTURE", "fixture-key")
    sandbox.app.workspaces["WS_FIXTURE"] = SandboxWorkspace("WS_FIXTURE", "fixture-key",
                                                            universe=12)  # fmt: skip
    path = write_workspaces(sandbox, {"id": "WS_FIXTURE"}, start_date="2024-11-01")
    day = next(d for d in (dt.date(2024, 11, 9) + dt.timedelta(n) for n in range(30))
               if campaigns_on("WS_FIXTURE", d, 12))  # a day with campaigns  # fmt: skip
    run_partition(build(path, str(tmp_path / "lake"), limiter_dir), day, "WS_FIXTURE")
    done = maintain(lake, keep_days=0)
    assert done.after.files <= done.before.files
    with contextlib.closing(connect(lake, read_only=True)) as conn:
        days = conn.execute("SELECT count(DISTINCT stat_date) FROM moestats.performance_stats"
                            ).fetchone()[0]  # fmt: skip
        raw = conn.execute("SELECT count(*) FROM moestats.campaign_stats_raw").fetchone()[0]
    assert days == 6 and raw > EXPECTED["tables"]["campaign_stats_raw"]["rows"]
    assert main(["lake", "upgrade", "--lake", str(tmp_path / "lake")]) == 0  # nothing to do
    assert "nothing to do" in capsys.readouterr().out


def test_a_postgres_catalog_upgrades_the_same_way(tmp_path, postgres_url):
    lake = postgres_lake(tmp_path, postgres_url)
    with pytest.raises(CatalogTooOld):
        connect(lake, read_only=True)
    done = upgrade(lake, say=lambda line: None)
    assert (done.from_format, done.to_format) == ("0.3", "1.0")
    assert done.census.tables == expected_tables()
    with psycopg.connect(postgres_url) as db:
        schemas = {r[0] for r in db.execute("SELECT schema_name FROM information_schema.schemata")}
        backup = next(s for s in schemas if s.startswith("moestats_backup_format_0_3"))
        old = db.execute(f"SELECT value FROM {backup}.ducklake_metadata WHERE key = 'version'")
        assert old.fetchone()[0] == "0.3" and WORK_SCHEMA not in schemas
    with connection(lake) as conn:  # writable again, as a run opens it: the next day loads
        assert conn.execute("SELECT count(*) FROM moestats.campaigns").fetchone()[0] == 12
        day = dt.date(2024, 11, 9)
        replace_slices(conn, {"failure_breakdown": failures(3, 4).assign(stat_date=day,
                       workspace_id="WS_FIXTURE")},
                       workspace_id="WS_FIXTURE", stat_date=day)  # fmt: skip
    done = maintain(lake, keep_days=0)  # and maintenance runs over it
    assert done.after.files <= done.before.files
    with contextlib.closing(connect(lake, read_only=True)) as conn:
        rows = conn.execute("SELECT count(*) FROM moestats.failure_breakdown").fetchone()[0]
    assert rows == EXPECTED["tables"]["failure_breakdown"]["rows"] + 2


def _upgrade_in_a_process(lake_folder: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "moestats_dagster.operations.cli", "lake", "upgrade", "--lake",
         str(lake_folder)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _kill_when(proc: subprocess.Popen, seen) -> None:
    """SIGKILL the upgrade as soon as `seen()` (its copy exists), or when it has ended."""
    deadline = time.monotonic() + PATIENCE
    while proc.poll() is None and not seen():
        assert time.monotonic() < deadline, "the upgrade neither started its copy nor ended"
        time.sleep(0.01)
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=PATIENCE)


def _as_it_was_or_upgraded(lake: Lake) -> None:
    """Whichever it is, the lake is whole: upgrading (again) ends with every table equal."""
    found = catalog_format(lake)
    assert found in ("0.3", "1.0")
    lines: list[str] = []
    done = upgrade(lake, say=lines.append)
    assert done.census.tables == expected_tables()
    if found == "0.3" and any("stopped before its swap" in line for line in lines):
        assert "as it was" in " ".join(lines)


def test_an_upgrade_killed_mid_way_leaves_the_sqlite_lake_as_it_was_or_upgraded(tmp_path):
    lake = sqlite_lake(tmp_path)
    work = Path(lake.catalog_at + WORK_SUFFIX)
    proc = _upgrade_in_a_process(tmp_path / "lake", dict(os.environ))
    _kill_when(proc, work.exists)
    _as_it_was_or_upgraded(lake)
    assert not work.exists()


def test_an_upgrade_killed_mid_way_leaves_the_postgres_catalog_as_it_was_or_upgraded(
    tmp_path, postgres_url
):
    lake = postgres_lake(tmp_path, postgres_url)

    def copying() -> bool:
        with psycopg.connect(postgres_url) as db:
            return bool(db.execute("SELECT 1 FROM information_schema.schemata WHERE "
                                   "schema_name = %s", [WORK_SCHEMA]).fetchone())  # fmt: skip

    env = {**os.environ, "MOESTATS_POSTGRES_URL": postgres_url}
    proc = _upgrade_in_a_process(tmp_path / "lake", env)
    _kill_when(proc, copying)
    _as_it_was_or_upgraded(lake)


def test_a_lake_copied_elsewhere_opens_there_and_records_where_it_is(tmp_path):
    lake = sqlite_lake(tmp_path)
    upgrade(lake, say=lambda line: None)
    moved = tmp_path / "restored" / "lake"
    shutil.copytree(tmp_path / "lake", moved)
    shutil.rmtree(tmp_path / "lake")
    with connection(Lake.at(moved)) as conn:  # a writing connection: the catalog follows
        [(path,)] = conn.execute("SELECT value FROM __ducklake_metadata_lake.ducklake_metadata "
                                 "WHERE key = 'data_path'").fetchall()  # fmt: skip
        assert path == str(moved / "files") + os.sep
        assert expected_tables().items() <= census(conn).tables.items()


def test_a_lake_whose_files_are_not_beside_its_catalog_is_refused_naming_both(tmp_path):
    lake = sqlite_lake(tmp_path)
    upgrade(lake, say=lambda line: None)
    shutil.copy(tmp_path / "lake" / "catalog.sqlite", tmp_path / "lonely.sqlite")
    elsewhere = Lake(f"sqlite:{tmp_path / 'lonely.sqlite'}", str(tmp_path / "nowhere") + os.sep)
    with pytest.raises(LakeMoved) as info:
        connect(elsewhere, read_only=True)
    assert str(tmp_path / "lake" / "files") in str(info.value)
    assert str(tmp_path / "nowhere") in str(info.value)


def test_the_doctor_says_where_a_moved_lake_is_and_refuses_one_without_its_files(tmp_path):
    from moestats_dagster.orchestration.lib.doctor import lake_versions

    lake = sqlite_lake(tmp_path)
    upgrade(lake, say=lambda line: None)
    moved = tmp_path / "elsewhere" / "lake"
    shutil.copytree(tmp_path / "lake", moved)
    line, ok = lake_versions(Lake.at(moved))
    assert ok and f"the lake moved from {tmp_path / 'lake' / 'files'}" in line
    shutil.rmtree(moved / "files")
    line, ok = lake_versions(Lake.at(moved))
    assert not ok and "✗ its catalog records its files at" in line and "MOESTATS_LAKE_PATH" in line


def _never_held_a_row(lake: Lake, table: str) -> None:
    """Make `table` of a 0.3 catalog one that never held a row, as DuckDB 1.4 leaves it: no data
    file and no `ducklake_table_stats` row (facts.md)."""
    with sqlite3.connect(lake.catalog_at) as db:
        [(table_id,)] = db.execute("SELECT table_id FROM ducklake_table WHERE table_name = ? "
                                   "AND end_snapshot IS NULL", [table]).fetchall()  # fmt: skip
        for name in ("ducklake_data_file", "ducklake_file_column_stats", "ducklake_delete_file",
                     "ducklake_table_stats", "ducklake_table_column_stats"):  # fmt: skip
            db.execute(f"DELETE FROM {name} WHERE table_id = ?", [table_id])


def test_a_lake_with_tables_that_never_held_a_row_upgrades_keeping_every_row(tmp_path):
    lake = sqlite_lake(tmp_path)
    _never_held_a_row(lake, "campaigns")  # before the first metadata refresh
    _never_held_a_row(lake, "campaign_period_goal_stats")  # periods off
    assert "campaigns" not in old_row_counts(lake)
    done = upgrade(lake, say=lambda _: None)
    want = expected_tables() | {"campaigns": (0, "0"), "campaign_period_goal_stats": (0, "0")}
    assert done.to_format == WRITES_FORMAT and done.census.tables == want


def test_an_upgrade_waits_for_a_publish_then_refuses_naming_it_and_writes_nothing(tmp_path):
    from moestats_dagster.lakehouse.lake_locks import _FileSession

    lake = sqlite_lake(tmp_path)
    catalog = Path(lake.catalog_at).read_bytes()
    session = _FileSession(Path(lake.catalog_at))  # what a run holds while it publishes
    with (
        session.lock("moestats publish", "2024-11-08|WS_FIXTURE", False, float("inf"), 1, ""),
        pytest.raises(UpgradeError, match="a run is publishing a partition") as info,
    ):
        upgrade(lake, say=lambda _: None, wait_seconds=1)
    assert "nothing was copied or swapped" in str(info.value)
    made = [p.name for p in (tmp_path / "lake").iterdir() if ".bak" in p.name or
            p.name.endswith(WORK_SUFFIX)]  # fmt: skip
    assert not made  # no backup, no copy
    assert Path(lake.catalog_at).read_bytes() == catalog
    assert catalog_format(lake) == "0.3"
    assert upgrade(lake, say=lambda _: None).to_format == WRITES_FORMAT  # once it is free


def test_a_catalog_of_a_newer_format_is_refused_before_anything_is_written_everywhere(
    tmp_path, monkeypatch, capsys
):
    import moestats_dagster
    from moestats_dagster.lakehouse.lake import CatalogTooNew
    from moestats_dagster.operations.cli import main

    lake = sqlite_lake(tmp_path)
    with sqlite3.connect(lake.catalog_at) as db:
        db.execute("UPDATE ducklake_metadata SET value = '9.9' WHERE key = 'version'")
    with pytest.raises(UpgradeError, match="DuckLake format 9.9, written by a newer DuckDB"):
        upgrade(lake, say=lambda _: None)
    assert not [p for p in (tmp_path / "lake").iterdir() if ".bak" in p.name]  # not a backup
    monkeypatch.setenv("MOESTATS_LAKE_PATH", str(tmp_path / "lake"))
    with pytest.raises(CatalogTooNew, match="9.9"):
        moestats_dagster.connect()
    for argv in (["query", "SELECT 1"], ["lake", "upgrade"]):
        with pytest.raises(SystemExit) as info:
            raise SystemExit(main(argv))
        err = capsys.readouterr().err
        assert info.value.code == 1 and "9.9" in err and "Traceback" not in err, err
