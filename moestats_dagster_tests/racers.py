"""Processes racing on one lake, for the warehouse and PostgreSQL tests.

A light module on purpose: spawned workers import it to find their work, and importing only the
warehouse (not Dagster) keeps each worker's start short.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing

import pandas as pd

from moestats_dagster.lakehouse.lake import Lake
from moestats_dagster.lakehouse.warehouse import (
    connection,
    replace_slices,
    replace_views,
    table_name,
)
from moestats_dagster.model.schemas import (
    CAMPAIGN_DAILY_SUMMARY,
    CAMPAIGNS,
    CONVERSION_GOAL_STATS,
    FAILURE_BREAKDOWN,
    PARENT_CAMPAIGN_DAILY_SUMMARY,
    PERFORMANCE_STATS,
)
from moestats_dagster.model.summary import rollup_sql, summary_sql
from moestats_dagster_tests.conftest import PATIENCE

DAY = dt.date(2024, 12, 2)


def without_inlining(lake: Lake) -> Lake:
    """The lake writes every insert as a Parquet file, however small: for tests about the files
    themselves. (DuckLake 1.0 keeps an insert of up to 10 rows in its catalog instead; the lake's
    real daily slices are larger, see docs/warehouse.md.)"""
    with connection(lake) as conn:
        conn.execute("CALL lake.set_option('data_inlining_row_limit', 0)")
    return lake


def failures(*counts) -> pd.DataFrame:
    n = len(counts)
    return FAILURE_BREAKDOWN.frame(
        {
            "workspace_id": ["W"] * n,
            "stat_date": [DAY] * n,
            "metric_type": ["TOTAL"] * n,
            "campaign_id": ["c"] * n,
            "entry_index": [0] * n,
            "platform": ["EMAIL"] * n,
            "locale": ["all_locales"] * n,
            "variation": ["all_variations"] * n,
            "reason": [f"r{i}" for i in range(n)],
            "count": list(counts),
        },
        length=n,
    )


def _first_write(lake: Lake, start) -> None:
    start.wait(timeout=PATIENCE)
    with connection(lake):
        pass


def _publish_same_day(lake: Lake, start) -> None:
    with connection(lake) as conn:
        start.wait(timeout=PATIENCE)
        replace_slices(conn, {"failure_breakdown": failures(5, 6)}, workspace_id="W",
                       stat_date=DAY)  # fmt: skip


def _replace_summary_views(lake: Lake, start) -> None:
    with connection(lake) as conn:
        perf, goals, campaigns, summary, parents = (table_name(conn, t) for t in (
            PERFORMANCE_STATS, CONVERSION_GOAL_STATS, CAMPAIGNS, CAMPAIGN_DAILY_SUMMARY,
            PARENT_CAMPAIGN_DAILY_SUMMARY))  # fmt: skip
        start.wait(timeout=PATIENCE)
        for _ in range(3):
            replace_views(conn, [summary_sql(perf, goals, campaigns, summary),
                                 rollup_sql(summary, campaigns, parents)])  # fmt: skip


def _outcomes(work, lakes: list[Lake], start, results) -> None:
    for trial, lake in enumerate(lakes):
        try:
            work(lake, start)
            results.put((trial, "ok"))
        except Exception as exc:
            results.put((trial, f"{type(exc).__name__}: {exc}"))


def at_once(work, lakes: list[Lake], processes: int) -> list[list[str]]:
    """`processes` spawned processes run `work` on each lake in turn (one trial per lake),
    released at one instant per trial by a barrier; each trial's outcomes ("ok" or the error).
    The processes are started once for all trials: starting Python with its imports is most of
    a trial's time."""
    spawn = multiprocessing.get_context("spawn")  # no fork of a process running servers
    start, results = spawn.Barrier(processes), spawn.Queue()
    procs = [spawn.Process(target=_outcomes, args=(work, lakes, start, results))
             for _ in range(processes)]  # fmt: skip
    for proc in procs:
        proc.start()
    got = [results.get(timeout=300) for _ in range(processes * len(lakes))]
    for proc in procs:
        proc.join(timeout=PATIENCE)
    return [sorted(o for t, o in got if t == trial) for trial in range(len(lakes))]


def first_writes_at_once(lakes: list[Lake], writers: int = 6) -> list[list[str]]:
    """`writers` processes open a lake nothing has created yet at the same instant, as the first
    runs of a new deployment do (on one host, or on several sharing a PostgreSQL catalog)."""
    return at_once(_first_write, lakes, writers)


def publishes_of_one_new_day_at_once(lakes: list[Lake], writers: int = 4) -> list[list[str]]:
    """`writers` processes publish the same partition, which nothing holds yet, at one instant:
    two hosts' runs of one workspace and day (a retry beside a backfill, two schedulers)."""
    for lake in lakes:
        with connection(lake):
            pass  # the lake exists: the race is on the partition, not on creating the catalog
    return at_once(_publish_same_day, lakes, writers)


def summary_views_replaced_at_once(lakes: list[Lake], writers: int = 4) -> list[list[str]]:
    """`writers` processes replace the summary views at one instant, three times each, as the
    summary runs of several workspaces do after a backfill."""
    for lake in lakes:
        with connection(lake):
            pass
    return at_once(_replace_summary_views, lakes, writers)
