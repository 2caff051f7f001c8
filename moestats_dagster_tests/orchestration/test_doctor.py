"""`moestats doctor` and the `moestats_doctor` job, against the sandbox over real HTTP."""

from __future__ import annotations

import socket

import pytest
from dagster import DagsterInstance

from moestats_dagster.operations.cli import main
from moestats_dagster.orchestration.defs.doctor_job import DOCTOR_JOB
from moestats_dagster_tests.conftest import ALPHA_KEY
from moestats_dagster_tests.helpers import build

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mixed(sandbox, write_workspaces):
    """One healthy workspace and one of each kind of trouble."""
    return write_workspaces(
        sandbox,
        {"id": "WS_ALPHA", "api_key": ALPHA_KEY, "flows": "auto"},
        {"id": "WS_NO_STATS", "api_key": "sandbox-key-no-stats"},
        {"id": "WS_NO_META", "api_key": "sandbox-key-no-meta"},
        {"id": "WS_NO_NAMES", "api_key": "sandbox-key-no-names"},
        {"id": "WS_BETA", "api_key": "not-the-key"},
        {"id": "WS_GAMMA", "api_key": "x", "base_url": f"http://127.0.0.1:{closed_port()}"},
        {"id": "WS_NOKEY", "api_key_env": "MOESTATS_TEST_UNSET_KEY"},
    )


def rows(output: str) -> dict[tuple[str, str], str]:
    """(workspace, check) -> the symbol, from the printed table."""
    found = {}
    for line in output.splitlines():
        parts = line.split("  ")
        parts = [p.strip() for p in parts if p.strip()]
        if len(parts) >= 3 and parts[2] in "✓✗!–":
            found[(parts[0], parts[1])] = parts[2]
    return found


def test_doctor_says_per_workspace_what_works_and_what_to_fix(mixed, monkeypatch, capsys):
    monkeypatch.setenv("MOESTATS_WORKSPACES_FILE", str(mixed))
    monkeypatch.delenv("MOESTATS_TEST_UNSET_KEY", raising=False)
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    table = rows(out)
    assert all(table[("WS_ALPHA", c)] == "✓" for c in (
        "host reachable", "credentials", "Stats API access", "names: Campaign Meta",
        "names: v1/campaigns/search", "campaign names", "rate-limit headers"))  # fmt: skip
    # no Campaigns key configured: v5 is ✗ with the key to create, and that is not fatal
    assert table[("WS_ALPHA", "names: v5/campaigns/search")] == "✗"
    assert "Campaigns View permission" in out
    assert table[("WS_NO_STATS", "Stats API access")] == "✗"
    assert table[("WS_NO_STATS", "names: Campaign Meta")] == "✓"
    assert table[("WS_NO_META", "Stats API access")] == "✓"
    assert table[("WS_NO_META", "names: Campaign Meta")] == "✗"
    assert table[("WS_NO_META", "campaign names")] == "✓"  # from v1/campaigns/search
    assert table[("WS_NO_NAMES", "campaign names")] == "!"
    # no v5 key: the Flows API cannot be asked, campaign search finds the flows instead (a
    # warning with what to ask for); without any search endpoint either, ✗ (not fatal)
    assert table[("WS_ALPHA", "flows")] == "!" and "enable the Flows API" in out
    assert "found through campaign search instead (v1/campaigns/search)" in out
    assert table[("WS_ALPHA", "time zone")] == "✓" and "app time zone" in out
    assert table[("WS_BETA", "credentials")] == "✗"
    assert table[("WS_GAMMA", "host reachable")] == "✗"
    assert table[("WS_NOKEY", "credentials")] == "✗"
    assert "enable Campaign Meta" in out and "enable the Stats API" in out
    assert "Campaign report API key" in out and "refused the connection" in out
    assert "MOESTATS_TEST_UNSET_KEY is not set" in out
    for secret in (ALPHA_KEY, "sandbox-key-no-stats", "sandbox-key-no-meta", "not-the-key",
                   "sandbox-key-no-names"):  # fmt: skip
        assert secret not in out


def test_doctor_exits_zero_when_every_workspace_is_ready(mixed, monkeypatch, capsys):
    monkeypatch.setenv("MOESTATS_WORKSPACES_FILE", str(mixed))
    assert main(["doctor", "--workspace", "WS_ALPHA"]) == 0
    last = capsys.readouterr().out.rstrip().splitlines()[-1]
    # the verdict agrees with the lines above it: v5 search is ✗ (no Campaigns key), not fatal
    assert last.startswith("✓ every workspace can run; ✗ above: names: v5/campaigns/search")


def test_doctor_refuses_an_unknown_workspace(mixed, monkeypatch, capsys):
    monkeypatch.setenv("MOESTATS_WORKSPACES_FILE", str(mixed))
    with pytest.raises(SystemExit) as info:
        main(["doctor", "--workspace", "WS_NOPE"])
    assert info.value.code == 2 and "WS_NOPE" in capsys.readouterr().err


def test_the_doctor_job_fails_in_the_ui_with_the_report(mixed, database, limiter_dir):
    defs = build(mixed, database, limiter_dir)
    result = defs.resolve_job_def(DOCTOR_JOB).execute_in_process(
        instance=DagsterInstance.ephemeral(), run_config=QUIET, raise_on_error=False
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.error.message
    assert "WS_NO_STATS Stats API access" in message and ALPHA_KEY not in message


def test_the_doctor_job_passes_when_all_is_well(sandbox, write_workspaces, database, limiter_dir):
    defs = build(write_workspaces(sandbox, {"id": "WS_ALPHA", "api_key": ALPHA_KEY}), database,
                 limiter_dir)  # fmt: skip
    result = defs.resolve_job_def(DOCTOR_JOB).execute_in_process(
        instance=DagsterInstance.ephemeral(), run_config=QUIET
    )
    [event] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    assert result.success and "✓" in event.event_specific_data.metadata["report"].value


def test_doctor_shows_flows_when_the_v5_key_reads_them(sandbox, write_workspaces, monkeypatch,
                                                       capsys):  # fmt: skip
    monkeypatch.setenv("TEST_V5", "sandbox-campaigns-key-alpha")
    path = write_workspaces(sandbox, {"id": "WS_ALPHA", "api_key": ALPHA_KEY, "flows": "auto",
                                      "campaigns_api_key_env": "TEST_V5"})  # fmt: skip
    monkeypatch.setenv("MOESTATS_WORKSPACES_FILE", str(path))
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert rows(out)[("WS_ALPHA", "flows")] == "✓"
    assert "sandbox-campaigns-key-alpha" not in out
