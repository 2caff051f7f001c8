"""The `moestats` command."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest

from moestats_dagster.config import load_settings
from moestats_dagster.operations.cli import BEGIN, END, main, schema_markdown
from moestats_dagster.operations.plan import plan_backfill
from moestats_dagster_tests.conftest import PATIENCE

ROOT = Path(__file__).resolve().parents[2]


def test_documented_tables_match_the_declared_schemas():
    doc = (ROOT / "docs" / "tables.md").read_text()
    section = doc.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert section == schema_markdown(), "run: moestats schema --write-readme docs/tables.md"


@pytest.mark.parametrize(
    "argv,message",
    [
        (["demo", "--days", "0"], "0 must be at least 1"),
        (["demo", "--days", "week"], "'week' is not a whole number"),
        (["sandbox", "--port", "70000"], "70000 is not a TCP port"),
        (["sandbox", "--defect", "typo"], "invalid choice: 'typo'"),
        (["backfill", "--from", "2024-13-01", "--to", "2024-12-31"], "not a date as YYYY-MM-DD"),
        (["backfill", "--from", "2024-02-01", "--to", "2024-01-31"], "before --from 2024-02-01"),
        (["backfill", "--to", "2024-01-31"], "the following arguments are required: --from"),
    ],
)
def test_bad_arguments_are_refused_with_the_reason(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_demo_refuses_an_unknown_workspace_before_running_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("MOESTATS_LAKE_PATH", str(tmp_path / "lake"))
    with pytest.raises(SystemExit) as info:
        main(["demo", "--workspace", "WS_NOPE"])
    assert info.value.code == 2
    assert "unknown workspace(s) ['WS_NOPE']" in capsys.readouterr().err
    assert not (tmp_path / "lake").exists()


def test_a_bad_workspaces_file_is_one_clear_line_not_a_traceback(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "ws.yaml"
    bad.write_text("start_date: '2024-01-01'\nworkspaces:\n  - id: A\n    data_center: '9'\n")
    monkeypatch.setenv("MOESTATS_WORKSPACES_FILE", str(bad))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with pytest.raises(SystemExit) as info:
        main(["demo"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "data_center '9' is not a MoEngage data center" in err
    assert "Traceback" not in err


def test_moestats_sandbox_serves_in_the_foreground():
    import base64
    import signal
    import subprocess
    import sys

    import requests

    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moestats"), "sandbox", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        # started by a parent that ignores SIGTERM (the child inherits it): still stops on it
        preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN),
    )
    try:
        url = proc.stdout.readline().split(" on ")[1].split(" ")[0]
        token = base64.b64encode(b"WS_ALPHA:sandbox-key-alpha").decode()
        answer = requests.post(
            url + "/core-services/v1/campaign-stats",
            json={
                "request_id": "r",
                "start_date": "2024-12-02",
                "end_date": "2024-12-02",
                "attribution_type": "VIEW_THROUGH",
                "metric_type": "TOTAL",
            },  # fmt: skip
            headers={"Authorization": f"Basic {token}", "MOE-APPKEY": "WS_ALPHA"},
            timeout=PATIENCE,
        )
        assert answer.status_code == 200 and answer.json()["response_id"] == "r"
    finally:
        proc.terminate()
        assert proc.wait(timeout=PATIENCE) == 0  # stopped as on Ctrl-C


def test_backfill_days_stay_inside_the_partitions(write_workspaces, sandbox):
    settings = load_settings(write_workspaces(sandbox, {"id": "WS_ALPHA", "api_key": "k"},
                                              start_date="2024-03-01"))  # fmt: skip
    [plan] = plan_backfill(
        settings, ["WS_ALPHA"], dt.date(2024, 2, 27), dt.date(2024, 3, 3)
    ).workspaces
    assert plan.days == [dt.date(2024, 3, d) for d in (1, 2, 3)]  # none before start_date
    assert plan.before_start == [dt.date(2024, 2, 27), dt.date(2024, 2, 28), dt.date(2024, 2, 29)]
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    [plan] = plan_backfill(settings, ["WS_ALPHA"], yesterday,
                           yesterday + dt.timedelta(days=5)).workspaces  # fmt: skip
    assert plan.days == [yesterday] and len(plan.not_over) == 5  # none that has not ended


def test_backfill_says_what_it_will_do_and_asks_above_90_days(
    write_workspaces, sandbox, monkeypatch, capsys, tmp_path
):
    path = write_workspaces(sandbox, {"id": "WS_ALPHA", "api_key": "k"}, start_date="2024-01-01")
    monkeypatch.setenv("MOESTATS_WORKSPACES_FILE", str(path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # no terminal
    assert main(["backfill", "--from", "2023-06-15", "--to", "2024-12-31"]) == 1
    out = capsys.readouterr().out
    assert "WS_ALPHA: 366 days (2024-01-01 to 2024-12-31)" in out
    assert "left out: 2023-06-15 to 2023-12-31 (200 days) — before start_date" in out
    assert "at least" in out and "API calls" in out and "calls/min" in out
    assert "More than 90 days of WS_ALPHA: not launched. Add --yes" in out
    assert not (tmp_path / "storage").exists()  # nothing launched, no instance touched


def test_a_backfill_with_nothing_to_load_says_why_and_fails(
    write_workspaces, sandbox, monkeypatch, capsys, tmp_path
):
    path = write_workspaces(sandbox, {"id": "WS_ALPHA", "api_key": "k"}, start_date="2024-03-01")
    monkeypatch.setenv("MOESTATS_WORKSPACES_FILE", str(path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    assert main(["backfill", "--from", "2023-01-01", "--to", "2023-01-31"]) == 1
    out = capsys.readouterr().out
    assert "left out: 2023-01-01 to 2023-01-31 (31 days) — before start_date (2024-03-01)" in out
    assert "Nothing to load: WS_ALPHA: every day asked is before start_date" in out
