"""The way in for people: `moestats_dagster.connect()` and `moestats query`."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

import moestats_dagster
from moestats_dagster.lakehouse.query import QueryRefused
from moestats_dagster.operations.cli import main
from moestats_dagster_tests.conftest import ALPHA_KEY, MULTI_PAGE_DAY, SMALL_DAY
from moestats_dagster_tests.helpers import build, run_partition

ALPHA = {"id": "WS_ALPHA", "api_key": ALPHA_KEY, "attribution_types": ["IN_SESSION"]}


@pytest.fixture
def loaded(sandbox, write_workspaces, database, limiter_dir, monkeypatch):
    defs = build(write_workspaces(sandbox, ALPHA), database, limiter_dir)
    run_partition(defs, SMALL_DAY, "WS_ALPHA")
    monkeypatch.setenv("MOESTATS_LAKE_PATH", database)
    return defs


def test_connect_resolves_tables_and_summary_views_read_only(loaded, database):
    conn = moestats_dagster.connect(database)
    try:
        [(n,)] = conn.execute("SELECT count(*) FROM moestats.performance_stats").fetchall()
        assert n > 0
        summary = conn.execute("SELECT * FROM moestats.campaign_daily_summary").fetchdf()
        assert len(summary) and "revenue_in_session" in summary.columns
        conn.execute("SELECT * FROM moestats.parent_campaign_daily_summary").fetchall()
        with pytest.raises(QueryRefused, match="read-only"):
            conn.execute("DELETE FROM moestats.performance_stats")
    finally:
        conn.close()


def test_a_notebook_holding_a_connection_stops_no_run(loaded, database):
    notebook = moestats_dagster.connect()  # $MOESTATS_LAKE_PATH, as a notebook would
    try:
        days = "SELECT list(DISTINCT stat_date ORDER BY stat_date) FROM moestats.campaign_stats_raw"
        assert notebook.execute(days).fetchall()[0][0] == [SMALL_DAY]
        result = run_partition(loaded, MULTI_PAGE_DAY, "WS_ALPHA")  # while the notebook is open
        assert result.success
        assert notebook.execute(days).fetchall()[0][0] == [SMALL_DAY, MULTI_PAGE_DAY]
    finally:
        notebook.close()


def test_moestats_query_prints_a_table_or_json(loaded, capsys):
    sql = "SELECT campaign_id, sent FROM moestats.campaign_daily_summary ORDER BY 1 LIMIT 3"
    assert main(["query", sql]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["campaign_id", "sent"] and len(out.splitlines()) == 5
    assert main(["query", sql, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3 and set(rows[0]) == {"campaign_id", "sent"}


def test_moestats_query_errors_are_one_clear_line(loaded, capsys, monkeypatch, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["query", "SELECT nope FROM moestats.performance_stats"])
    assert info.value.code == 2 and "nope" in capsys.readouterr().err
    monkeypatch.setenv("MOESTATS_LAKE_PATH", str(tmp_path / "empty"))
    with pytest.raises(SystemExit) as info:
        main(["query", "SELECT 1"])
    assert info.value.code == 2 and "run `make demo`" in capsys.readouterr().err


def attacks(lake: str) -> dict[str, str]:
    """What a careless analyst or a hostile script sent through the read-only way in."""
    catalog = f"{lake}/catalog.sqlite"
    return {
        "overwrite a data file": f"COPY (SELECT 1) TO '{lake}/files/moestats/x.parquet'",
        "write anywhere": f"COPY (SELECT 1) TO '{lake}/../out.csv'",
        "attach the lake writable": f"ATTACH 'ducklake:sqlite:{catalog}' AS w "
        f"(DATA_PATH '{lake}/files/'); DELETE FROM w.moestats.performance_stats",
        "attach the catalog": f"ATTACH '{catalog}' AS s (TYPE sqlite)",
        "catalog through a function": f"SELECT * FROM sqlite_scan('{catalog}', 'ducklake_data_file')",
        "read a system file": "SELECT * FROM read_csv('/etc/passwd')",
        "delete": "DELETE FROM moestats.performance_stats",
        "undo the settings": "SET enable_external_access = true",
        "sql of its own": "SELECT * FROM query('SELECT 1')",
    }


def test_the_read_only_way_in_cannot_write_attach_or_read_outside_the_lake(loaded, database):
    conn = moestats_dagster.connect(database)
    count = "SELECT count(*) FROM moestats.performance_stats"
    before = conn.execute(count).fetchall()
    files = sorted(p.name for p in Path(database, "files").rglob("*") if p.is_file())
    for what, sql in attacks(str(Path(database).absolute())).items():
        with pytest.raises((QueryRefused, duckdb.PermissionException)):
            conn.execute(sql)
            pytest.fail(f"{what}: ran")
    with pytest.raises(QueryRefused, match="write_parquet"):
        conn.sql("SELECT 1").write_parquet(f"{database}/files/y.parquet")
    with pytest.raises(QueryRefused, match="filter is not available"):  # SQL the gate never saw
        conn.sql("SELECT 1 AS x").filter("x IN (SELECT 1 FROM sqlite_scan('c', 't'))")
    assert not Path(database).parent.joinpath("out.csv").exists()
    assert sorted(p.name for p in Path(database, "files").rglob("*") if p.is_file()) == files
    assert conn.execute(count).fetchall() == before  # every table as it was, still readable
    assert conn.sql("SELECT count(*) AS n FROM moestats.campaign_daily_summary").df()["n"][0] > 0
    conn.close()


def test_moestats_query_refuses_a_write_in_one_line(loaded, database, capsys):
    with pytest.raises(SystemExit) as info:
        main(["query", f"COPY (SELECT 1) TO '{database}/files/x.parquet'"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "COPY statements are refused" in err and "read-only" in err
    assert main(["query", "SELECT count(*) AS n FROM moestats.performance_stats"]) == 0
