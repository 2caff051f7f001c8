"""After the commit, the truth: a day the catalog says was published is reported as published,
whatever fails after its statements ran."""

from __future__ import annotations

import contextlib

import duckdb
import pytest
from dagster import DagsterInstance

import moestats_dagster.lakehouse.warehouse as warehouse
from moestats_dagster.lakehouse.lake import Lake
from moestats_dagster.lakehouse.warehouse import (
    PublishedThenFailed,
    connection,
    read_slice,
    replace_slices,
)
from moestats_dagster.model.schemas import FAILURE_BREAKDOWN
from moestats_dagster.orchestration.lib import headlines
from moestats_dagster_tests.conftest import ALPHA_KEY, SMALL_DAY
from moestats_dagster_tests.helpers import build, run_partition, slice_of
from moestats_dagster_tests.racers import DAY, failures


def _lock_that_fails_on_release(*args, **kwargs):
    @contextlib.contextmanager
    def lock():
        yield
        raise duckdb.IOException("Failed to read connection error for HTTP PUT (injected)")

    return lock()


def test_a_publish_that_committed_then_failed_says_it_was_published(tmp_path, monkeypatch):
    lake = Lake.at(tmp_path / "lake")
    monkeypatch.setattr(warehouse, "partition_lock", _lock_that_fails_on_release)
    with connection(lake) as conn, pytest.raises(PublishedThenFailed) as info:
        replace_slices(conn, {"failure_breakdown": failures(4, 5)}, workspace_id="W",
                       stat_date=DAY)  # fmt: skip
    assert str(info.value).startswith(f"published W|{DAY}; then IOException")
    monkeypatch.undo()
    with connection(lake) as conn:
        stored = read_slice(conn, FAILURE_BREAKDOWN, workspace_id="W", stat_date=DAY)
    assert sorted(stored["count"]) == [4, 5]


def test_a_publish_that_failed_before_its_commit_says_so_as_before(tmp_path, monkeypatch):
    lake = Lake.at(tmp_path / "lake")
    with connection(lake) as conn:
        replace_slices(conn, {"failure_breakdown": failures(7)}, workspace_id="W", stat_date=DAY)

    def fails_inside(conn, work):
        conn.execute("BEGIN TRANSACTION")
        conn.execute("ROLLBACK")
        raise duckdb.IOException("the object store went away (injected)")

    monkeypatch.setattr(warehouse, "_in_transaction", fails_inside)
    with connection(lake) as conn, pytest.raises(duckdb.IOException):
        replace_slices(conn, {"failure_breakdown": failures(1)}, workspace_id="W", stat_date=DAY)
    monkeypatch.undo()
    with connection(lake) as conn:
        stored = read_slice(conn, FAILURE_BREAKDOWN, workspace_id="W", stat_date=DAY)
    assert list(stored["count"]) == [7]  # the last good slice


def test_a_read_back_that_fails_after_the_commit_keeps_the_materialization(
    sandbox, write_workspaces, database, limiter_dir, monkeypatch
):
    def unreadable(*args, **kwargs):
        raise duckdb.IOException(
            "Failed to read 's3://lake/files/x.parquet' (injected); nothing was written"
        )  # the lake's words, not true here

    monkeypatch.setattr(headlines.Headlines, "from_lake", unreadable)
    path = write_workspaces(sandbox, {"id": "WS_ALPHA", "api_key": ALPHA_KEY,
                                      "metric_types": ["TOTAL"],
                                      "attribution_types": ["VIEW_THROUGH"]})  # fmt: skip
    defs = build(path, database, limiter_dir)
    instance = DagsterInstance.ephemeral()
    result = run_partition(defs, SMALL_DAY, "WS_ALPHA", instance=instance, raise_on_error=False)
    assert not result.success
    materialized = {m.asset_key.path[-1] for m in result.asset_materializations_for_node(
        "campaign_stats")}  # fmt: skip
    assert {"campaign_stats_raw", "performance_stats"} <= materialized
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.error.message
    assert f"published {SMALL_DAY}|WS_ALPHA; the anomaly check could not read it back" in message
    assert "The day is in the lake and materialized" in message
    assert "nothing was published" not in message and "nothing was written" not in message
    assert len(slice_of(database, "campaign_stats_raw", SMALL_DAY, "WS_ALPHA"))
    [check] = [e for e in result.get_asset_check_evaluations()
               if e.check_name == "headline_numbers_within_usual_range"]  # fmt: skip
    assert not check.passed and "could not read it back" in check.metadata["summary"].value
