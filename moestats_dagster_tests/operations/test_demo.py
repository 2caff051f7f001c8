"""The demo's progress bar: every stretch of waiting says what it waits for."""

from __future__ import annotations

from dagster import DagsterRun, DagsterRunStatus

from moestats_dagster.operations.demo import _activity


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


def test_the_demo_says_where_each_report_is(tmp_path, capsys, monkeypatch):
    from moestats_dagster.operations.demo import print_reports

    monkeypatch.delenv("MOESTATS_REPORTS_PATH", raising=False)
    page = tmp_path / "data" / "reports" / "WS_ALPHA" / "report.html"
    page.parent.mkdir(parents=True)
    page.write_text("<html></html>")
    print_reports(str(tmp_path / "data" / "lake"), ["WS_ALPHA", "WS_BETA"])
    out = capsys.readouterr().out
    assert "Reports (open in a browser):" in out and str(page) in out
    assert "WS_BETA" not in out  # no report written for it: not pointed at


def test_the_demo_names_our_command_as_the_shell_finds_it(monkeypatch, tmp_path):
    import sys
    from pathlib import Path

    from moestats_dagster.operations.demo import command

    ours = Path(sys.executable).parent / "moestats"
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # the venv not activated
    monkeypatch.chdir(ours.parent.parent.parent)
    assert command() == str(ours.relative_to(ours.parent.parent.parent))
    monkeypatch.setenv("PATH", f"{ours.parent}:/usr/bin:/bin")  # activated
    assert command() == "moestats"
