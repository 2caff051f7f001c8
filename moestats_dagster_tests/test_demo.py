"""The demo's progress bar: every stretch of waiting says what it waits for."""

from __future__ import annotations

from dagster import DagsterRun, DagsterRunStatus

from moestats_dagster.demo import _activity


def run(status: DagsterRunStatus, key: str = "2024-12-05|WS_ALPHA") -> DagsterRun:
    return DagsterRun(job_name="moestats_stats", status=status, tags={"dagster/partition": key})


def test_the_bar_names_what_it_waits_for_at_every_stage():
    not_started, started = run(DagsterRunStatus.NOT_STARTED), run(DagsterRunStatus.STARTED)
    done = run(DagsterRunStatus.SUCCESS)
    assert _activity([], [], False, set()) == "the daemon is turning the backfill into runs"
    assert _activity([not_started], [not_started], False, set()) == "starting 1 run(s)"
    assert _activity([not_started, started], [not_started, started], False, set()) == (
        "running WS_ALPHA, 2024-12-05"
    )
    assert _activity([done], [], True, {"WS_BETA", "WS_ALPHA"}) == (
        "waiting for moestats_automation to refresh WS_ALPHA, WS_BETA"
    )
    assert _activity([done], [], True, set()) == ""
