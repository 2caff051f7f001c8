"""The demo's progress bar: every stretch of waiting says what it waits for."""

from __future__ import annotations

from dagster import DagsterRun, DagsterRunStatus

from moestats_dagster.demo import _activity


def run(status: DagsterRunStatus, day: str = "2024-12-05") -> DagsterRun:
    return DagsterRun(job_name="moestats_stats", status=status,
                      tags={"dagster/partition": f"{day}|WS_ALPHA"})  # fmt: skip


def test_the_bar_names_what_it_waits_for_at_every_stage():
    starting, started = run(DagsterRunStatus.STARTING), run(DagsterRunStatus.STARTED, "2024-12-06")
    done = run(DagsterRunStatus.SUCCESS)
    # a queued run needs the origin the daemon gives it; only its status matters here
    queued = run(DagsterRunStatus.NOT_STARTED, "2024-12-07")._replace(
        status=DagsterRunStatus.QUEUED
    )
    assert _activity([], [], set()) == "the daemon is turning the backfill into runs"
    assert _activity([starting], [starting], set()) == "starting WS_ALPHA, 2024-12-05"
    assert _activity([queued, starting], [queued, starting], set()) == (
        "starting WS_ALPHA, 2024-12-05 (1 queued)"
    )
    assert _activity([queued, done], [queued], set()) == "dequeuing the next run (1 queued)"
    created = run(DagsterRunStatus.NOT_STARTED, "2024-12-08")  # made, not yet in the queue
    assert _activity([created], [created], set()) == "dequeuing the next run (1 queued)"
    assert _activity([starting, started], [starting, started], set()) == (
        "running WS_ALPHA, 2024-12-06"
    )
    assert _activity([done], [], {"WS_BETA", "WS_ALPHA"}) == (
        "waiting for moestats_automation to refresh WS_ALPHA, WS_BETA"
    )
    assert _activity([done], [], set()) == ""
