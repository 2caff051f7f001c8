"""The way in for people: `moestats_dagster.connect()` and `moestats query`."""

from __future__ import annotations

import json

import duckdb
import pytest

import moestats_dagster
from moestats_dagster.cli import main

from .conftest import ALPHA_KEY, MULTI_PAGE_DAY, SMALL_DAY
from .helpers import build, run_partition

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
        with pytest.raises(duckdb.Error, match="read-only|attached in read-only mode|READ_ONLY"):
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
