"""dbt-duckdb's way into the lake (lakehouse/dbt_plugin.py), as dbt-duckdb calls it: the production
lake (files in a bucket, catalog in PostgreSQL) attached read-only, a missing lake named, and a
catalog's password never in what dbt would print."""

from __future__ import annotations

import duckdb
import pytest
from dbt.adapters.duckdb.plugins import BasePlugin

from moestats_dagster.lakehouse.lake import Lake, WarehouseNotFound
from moestats_dagster.lakehouse.warehouse import connection, replace_slices
from moestats_dagster_tests.racers import DAY, failures

MODULE = "moestats_dagster.lakehouse.dbt_plugin"


def _attached(lake_path: str) -> duckdb.DuckDBPyConnection:
    """A connection set up as dbt-duckdb sets up its own: config, connect, then the plugin."""
    plugin = BasePlugin.create(MODULE, config={"lake_path": lake_path})
    config: dict = {}
    plugin.update_connection_config(None, config)
    conn = duckdb.connect(":memory:", config=config)
    plugin.configure_connection(conn)
    return conn


def test_a_production_lake_is_attached_read_only(bucket, postgres_url, monkeypatch):
    monkeypatch.setenv("MOESTATS_POSTGRES_URL", postgres_url)
    folder = bucket.url("team/lake")
    with connection(Lake.from_env(folder)) as conn:
        replace_slices(conn, {"failure_breakdown": failures(7)}, workspace_id="W", stat_date=DAY)
    conn = _attached(folder)
    try:
        assert conn.execute("SELECT count FROM lake.moestats.failure_breakdown").fetchall() == [
            (7,)
        ]
        with pytest.raises(duckdb.Error, match="read-only"):
            conn.execute("DELETE FROM lake.moestats.failure_breakdown")
        with pytest.raises(duckdb.Error, match="read-only"):
            conn.execute("CREATE TABLE lake.moestats.mine AS SELECT 1 AS x")
        conn.execute("CREATE TABLE mine AS SELECT 1 AS x")  # the team's own database is writable
    finally:
        conn.close()
    with connection(Lake.from_env(folder)) as conn:
        assert conn.execute("SELECT count FROM moestats.failure_breakdown").fetchall() == [(7,)]


def test_a_missing_lake_is_named_when_dbt_connects(tmp_path):
    plugin = BasePlugin.create(MODULE, config={"lake_path": str(tmp_path / "nowhere")})  # parse
    config: dict = {}
    plugin.update_connection_config(None, config)
    with duckdb.connect(":memory:", config=config) as conn, pytest.raises(WarehouseNotFound) as e:
        plugin.configure_connection(conn)
    assert str(tmp_path / "nowhere") in str(e.value) and "MOESTATS_LAKE_PATH" in str(e.value)


def test_an_unknown_setting_is_refused_naming_the_one_there_is():
    with pytest.raises(ValueError, match="lake_path"):
        BasePlugin.create(MODULE, config={"lakepath": "data/lake"})


def test_an_unreachable_catalog_is_named_without_its_password(tmp_path, monkeypatch):
    monkeypatch.setenv("MOESTATS_POSTGRES_URL", "postgresql://moestats:s3cret-pw@127.0.0.1:9/lake")
    with pytest.raises(Exception) as e:
        _attached(str(tmp_path / "lake"))
    assert "s3cret-pw" not in str(e.value) and "127.0.0.1" in str(e.value)
