"""The engine's known wrong answers: DuckDB 1.5.1-1.5.5's `common_subplan` optimizer is off on
every connection we open, and our own tables and views answer the same with it on and off."""

from __future__ import annotations

import duckdb
import pytest

import moestats_dagster
from moestats_dagster.lakehouse.engine import (
    connection_config,
    disabled_optimizers,
    frames_connection,
    optimizer_note,
)
from moestats_dagster.lakehouse.lake import Lake, connect
from moestats_dagster.lakehouse.query import QueryRefused
from moestats_dagster.model.schemas import TABLES, VIEWS
from moestats_dagster_tests.conftest import MULTI_PAGE_DAY, SMALL_DAY
from moestats_dagster_tests.helpers import build, run_partition

# DuckDB issue #24624's reproduction: the two arms return 1 row and 0 rows; their UNION ALL
# returns 0 while common_subplan merges them (1.5.1-1.5.5), 1 without it.
REPRODUCTION_TABLES = (
    "CREATE TABLE t2(c0 BOOLEAN); CREATE TABLE t0(c1 VARCHAR); "
    "INSERT INTO t0 VALUES ('a'); INSERT INTO t2 VALUES (false)"
)
REPRODUCTION = """
SELECT count(*) FROM (
  SELECT * FROM t2 LEFT JOIN t0 ON true
    WHERE NOT ((NOT t2.c0) AND (substring(t0.c1 FROM -4294967296) <> t0.c1))
  UNION ALL
  SELECT * FROM t2 LEFT JOIN t0 ON true
    WHERE ((NOT t2.c0) AND (substring(t0.c1 FROM -4294967296) <> t0.c1)) IS NULL)
"""
AFFECTED = bool(disabled_optimizers())


def test_the_affected_versions_are_named():
    assert disabled_optimizers("1.5.0") == []
    assert disabled_optimizers("1.5.1") == disabled_optimizers("1.5.5") == ["common_subplan"]
    assert disabled_optimizers("1.5.6") == disabled_optimizers("2.0.1") == []
    assert "#25819" in optimizer_note("1.5.5") and "no optimizer" in optimizer_note("1.5.6")


@pytest.mark.skipif(not AFFECTED, reason="this DuckDB has no optimizer known to answer wrong")
def test_the_public_reproduction_answers_right_on_our_connections():
    plain = duckdb.connect()
    plain.execute(REPRODUCTION_TABLES)
    assert plain.execute(REPRODUCTION).fetchone() == (0,)  # the engine's wrong answer, as filed
    for ours in (duckdb.connect(config=connection_config()), frames_connection()):
        ours.execute(REPRODUCTION_TABLES)
        assert ours.execute(REPRODUCTION).fetchone() == (1,)


@pytest.fixture
def loaded(sandbox, write_workspaces, database, limiter_dir, monkeypatch):
    ws = {"id": "WS_ALPHA", "api_key": "sandbox-key-alpha", "flows": "auto"}
    defs = build(write_workspaces(sandbox, ws), database, limiter_dir)
    for day in (SMALL_DAY, MULTI_PAGE_DAY):
        run_partition(defs, day, "WS_ALPHA")
    monkeypatch.setenv("MOESTATS_LAKE_PATH", database)
    return database


@pytest.mark.skipif(not AFFECTED, reason="this DuckDB has no optimizer known to answer wrong")
def test_an_analyst_cannot_turn_the_optimizer_back_on(loaded):
    reader = moestats_dagster.connect(loaded)
    try:
        setting = "SELECT current_setting('disabled_optimizers')"
        assert reader.execute(setting).fetchone() == ("common_subplan",)
        with pytest.raises((QueryRefused, duckdb.Error)):
            reader.execute("SET disabled_optimizers = ''")
        assert reader.execute(setting).fetchone() == ("common_subplan",)
    finally:
        reader.close()


def test_every_table_and_view_answers_the_same_with_the_optimizer_on_and_off(loaded):
    """The guard for the next engine upgrade: a wrong answer of the optimizer in our own SQL
    shows here as a difference."""
    conn = connect(Lake.at(loaded), read_only=True)
    try:
        compared = 0
        for name in [*TABLES, *VIEWS]:
            answers = []
            for off in ("common_subplan", ""):
                conn.execute(f"SET disabled_optimizers = '{off}'")
                answers.append(conn.execute(f"FROM moestats.{name} ORDER BY ALL").fetchall())
            assert answers[0] == answers[1], name
            compared += bool(answers[0])
        assert compared >= 8  # the day tables, the flows and the views hold rows
    finally:
        conn.close()
