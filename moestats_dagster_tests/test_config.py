"""The workspaces file: the documented contract, and clear errors for bad files."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from moestats_dagster.config import (
    WorkspacesFileError,
    bundled_workspaces_file,
    load_settings,
)

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "ws.yaml"
    path.write_text(textwrap.dedent(text))
    return path


GOOD = """
    start_date: "2024-01-01"
    timezone: "Asia/Kolkata"
    workspaces:
      - id: "WS_ALPHA"
        data_center: 1
        api_key_env: "MOENGAGE_API_KEY_WS_ALPHA"
        attribution_types: [VIEW_THROUGH, IN_SESSION]
        metric_types: [UNIQUE]
        campaign_ids: ["a1", "b2"]
        rate_limit_per_minute: 50
      - id: "WS_BETA"
        data_center: "101"
        api_key_env: "MOENGAGE_API_KEY_WS_BETA"
        base_url: "http://127.0.0.1:8123"
"""


def test_the_documented_contract_loads_with_defaults(tmp_path):
    settings = load_settings(write(tmp_path, GOOD))
    alpha, beta = settings.workspaces
    assert alpha.data_center == "01" and alpha.rate_limit_per_minute == 50
    assert alpha.attribution_types == ("VIEW_THROUGH", "IN_SESSION")
    assert beta.attribution_types[0] == "VIEW_THROUGH" and len(beta.attribution_types) == 5
    assert beta.metric_types == ("TOTAL", "UNIQUE") and beta.rate_limit_per_minute == 100
    assert settings.timezone == "Asia/Kolkata" and settings.restatement_days == 3


def _readme_yaml(starting: str) -> str:
    blocks = [b.split("```", 1)[0] for b in (ROOT / "README.md").read_text().split("```yaml\n")[1:]]
    return next(b for b in blocks if b.startswith(starting))


def test_readme_example_is_a_valid_workspaces_file(tmp_path):
    settings = load_settings(write(tmp_path, _readme_yaml("start_date:")))
    assert settings.workspaces[0].id == "WS_ALPHA"
    assert settings.alerts.slack.channel == "#marketing-data"
    assert settings.zone("WS_ALPHA") == "America/New_York"


def test_readme_component_example_is_valid():
    import yaml

    from moestats_dagster import MoEngageStats

    block = yaml.safe_load(_readme_yaml("type: moestats_dagster.MoEngageStats"))
    component = MoEngageStats(**block["attributes"])
    settings = component.settings("README")
    assert settings.workspaces[0].data_center == "01"
    assert component.key_prefix == ["marketing", "moestats"]


def test_bundled_default_uses_the_sandbox():
    settings = load_settings(bundled_workspaces_file())
    assert settings.uses_sandbox and len(settings.workspaces) == 3


@pytest.mark.parametrize(
    "change,expected",
    [
        (("rate_limit_per_minute: 50", "rate_limit_per_minut: 50"),
         ["workspace 'WS_ALPHA'", "rate_limit_per_minut", "unknown key", "allowed:"]),
        (('data_center: "101"', 'data_center: "01.evil.com"'),
         ["workspace 'WS_BETA'", "data_center", "01, 02, 03, 04, 05, 06, 101"]),
        (("metric_types: [UNIQUE]", "metric_types: [UNIQ]"),
         ["workspace 'WS_ALPHA'", "metric_types", "'TOTAL' or 'UNIQUE'"]),
        (("[VIEW_THROUGH, IN_SESSION]", "[VIEW_THRU]"), ["attribution_types", "VIEW_THROUGH"]),
        (('id: "WS_BETA"', 'id: "WS_ALPHA"'), ["'WS_ALPHA' appears twice", "merge"]),
        (('timezone: "Asia/Kolkata"', 'timezone: "Mars/Base"'), ["top level", "IANA"]),
        (('api_key_env: "MOENGAGE_API_KEY_WS_BETA"', ""), ["WS_BETA", "api_key_env is required"]),
        (('start_date: "2024-01-01"', 'start_date: "yesterday"'), ["start_date"]),
        # gaps found by probing:
        (('id: "WS_ALPHA"', 'id: "WS_ALPHA\\n"'), ["id", "is not a workspace id"]),
        (('base_url: "http://127.0.0.1:8123"', 'base_url: "http://"'),
         ["workspace 'WS_BETA'", "base_url", "must be http(s)://host[:port]"]),
        (('base_url: "http://127.0.0.1:8123"', 'base_url: "https://user:pw@proxy:8443"'),
         ["base_url must not carry credentials"]),
        (("rate_limit_per_minute: 50", "rate_limit_per_minute: true"),
         ["workspace 'WS_ALPHA'", "rate_limit_per_minute", "valid integer", "got True"]),
        (("rate_limit_per_minute: 50", 'rate_limit_per_minute: "50"'), ["got '50'"]),
        (('start_date: "2024-01-01"', 'start_date: "2999-01-01"'),
         ["top level: start_date", "is in the future"]),
        (("rate_limit_per_minute: 50", "rate_limit_per_minute: 50\n        data_center: 2"),
         ["not valid YAML", "'data_center' appears twice", "lines 6 and 12"]),
        # L: catch-up, periods and campaign-metadata sources
        (("timezone:", "catch_up_days: 365\n    timezone:"), ["catch_up_days", "less than or equal to 90"]),
        (("timezone:", "periods: [month, day]\n    timezone:"), ["periods", "'week' or 'month'"]),
        (("timezone:", "periods: [month, month]\n    timezone:"), ["periods lists a value twice"]),
        (("rate_limit_per_minute: 50", "campaign_metadata: v5"),
         ["workspace 'WS_ALPHA'", "v5 needs campaigns_api_key_env", "Campaigns View"]),
        (("rate_limit_per_minute: 50", "campaign_metadata: names"),
         ["campaign_metadata", "'auto', 'search', 'meta', 'v5' or 'off'"]),
        (("rate_limit_per_minute: 50", 'campaigns_api_key_env: "MOENGAGE_API_KEY_WS_ALPHA"'),
         ["same variable as api_key_env", "never sent there"]),
        # O: flow-linked campaigns
        (("rate_limit_per_minute: 50", "flows: sometimes"), ["flows", "'auto' or 'off'"]),
        (("rate_limit_per_minute: 50", 'flow_teams: ["Growth", "Growth"]'),
         ["workspace 'WS_ALPHA'", "flow_teams lists a team twice"]),
        (("rate_limit_per_minute: 50", 'flow_teams: [" "]'), ["flow_teams.0 is not a team name"]),
    ],
)  # fmt: skip
def test_bad_files_name_the_file_the_workspace_and_the_fix(tmp_path, change, expected):
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(WorkspacesFileError) as info:
        load_settings(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in expected:
        assert fragment in message


def test_one_bad_workspace_is_one_problem_not_two(tmp_path):
    path = write(tmp_path, GOOD.replace('data_center: "101"', 'data_center: "09"'))
    with pytest.raises(WorkspacesFileError) as info:
        load_settings(path)
    assert "1 problem(s)" in str(info.value) and "at least 1 item" not in str(info.value)


def test_missing_file_and_bad_yaml_are_explained(tmp_path):
    with pytest.raises(WorkspacesFileError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")
    with pytest.raises(WorkspacesFileError, match="not valid YAML"):
        load_settings(write(tmp_path, "workspaces: [\n"))


def validate(tmp_path, **env: str) -> subprocess.CompletedProcess:
    """`dagster definitions validate -w workspace.yaml` in a clean environment."""
    bin_dir = Path(sys.executable).parent
    env = {"PATH": str(bin_dir), "DAGSTER_HOME": str(tmp_path), "HOME": str(tmp_path), **env}
    return subprocess.run(
        [str(bin_dir / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_definitions_validate_passes_on_the_workspace_yaml(tmp_path):
    result = validate(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_bad_workspaces_file_fails_validation_with_its_message(tmp_path):
    path = write(tmp_path, GOOD.replace('data_center: "101"', 'data_center: "7"'))
    result = validate(tmp_path, MOESTATS_WORKSPACES_FILE=str(path))
    assert result.returncode != 0
    assert "data_center '7' is not a MoEngage data center" in result.stdout + result.stderr


@pytest.mark.parametrize(
    "change,expected",
    [
        (('id: "WS_BETA"', 'id: ".."'), ["'..' is not a workspace id", "names folders"]),
        (('id: "WS_BETA"', 'id: "."'), ["'.' is not a workspace id"]),
        (('id: "WS_BETA"', f'id: "{"W" * 5000}"'), ["(5000 characters)", "1 to 64"]),
        (('campaign_ids: ["a1", "b2"]', f'campaign_ids: ["a1", "{"c" * 5000}"]'),
         ["campaign_ids.1 is not a campaign id"]),
        (('start_date: "2024-01-01"', "start_date: 2024-13-01"),
         ["top level: start_date", "write a date as YYYY-MM-DD"]),
        (('start_date: "2024-01-01"', 'start_date: "0001-01-01"'),
         ["start_date 0001-01-01 is more than 5 years back", "earliest:"]),
        (('campaign_ids: ["a1", "b2"]', "campaign_ids: [100, 200]"),
         ["campaign_ids.0", "write text; quote it", "got 100"]),
        (("rate_limit_per_minute: 50", "rate_limit_per_minute: fifty"),
         ["rate_limit_per_minute", "write a whole number such as 100"]),
        (("rate_limit_per_minute: 50", 'rate_limit_per_minute: 50\n        currency: "euro"'),
         ["currency: 'euro' is not a currency code", "such as EUR or USD"]),
    ],
)  # fmt: skip
def test_hostile_or_careless_values_are_refused_with_the_fix_for_their_key(
    tmp_path, change, expected
):
    text = GOOD.replace(*change)
    assert text != GOOD
    with pytest.raises(WorkspacesFileError) as info:
        load_settings(write(tmp_path, text))
    message = str(info.value)
    for fragment in expected:
        assert fragment in message
    assert "W" * 100 not in message and "c" * 200 not in message  # never the whole long value


@pytest.mark.parametrize("secret", ["a1b2-c3d4-SECRETKEY", "xoxb-1234-5678-abcdef"])
def test_a_key_pasted_where_its_variable_name_belongs_is_never_echoed(tmp_path, secret):
    for key, name in (("api_key_env", "MOENGAGE_API_KEY_WS_BETA"), ("token_env", None)):
        if name:
            text = GOOD.replace(f'api_key_env: "{name}"', f'api_key_env: "{secret}"')
        else:
            text = (
                GOOD
                + f'    alerts:\n      slack:\n        channel: "#x"\n        token_env: "{secret}"\n'
            )
        with pytest.raises(WorkspacesFileError) as info:
            load_settings(write(tmp_path, text))
        message = str(info.value)
        assert secret not in message and secret[:8] not in message
        assert f"{key}: this looks like a key, not a variable name" in message


def test_a_file_that_is_not_utf8_is_named_with_the_line(tmp_path):
    path = tmp_path / "ws.yaml"
    path.write_bytes(b'start_date: "2024-01-01"\nworkspaces:\n  - id: "WS_\xe9"\n')
    with pytest.raises(WorkspacesFileError) as info:
        load_settings(path)
    assert str(path) in str(info.value) and "not UTF-8" in str(info.value)
    assert "line 3" in str(info.value)


def test_slack_checks_must_be_a_boolean_not_a_number(tmp_path):
    text = GOOD + '    alerts:\n      slack:\n        channel: "#x"\n        checks: 0\n'
    with pytest.raises(WorkspacesFileError, match="checks: .*write true or false"):
        load_settings(write(tmp_path, text))


def test_a_start_given_in_days_ago_moves_with_the_calendar(tmp_path):
    import datetime as dt

    path = tmp_path / "w.yaml"
    path.write_text('start_date: "28 days ago"\nworkspaces:\n  - id: A\n    base_url: sandbox\n')
    today = dt.datetime.now(dt.UTC).date()
    assert load_settings(path).start_date in {today - dt.timedelta(days=28),
                                              today - dt.timedelta(days=27)}  # fmt: skip
    path.write_text('start_date: "0 days ago"\nworkspaces:\n  - id: A\n    base_url: sandbox\n')
    with pytest.raises(WorkspacesFileError, match="between 1 and"):
        load_settings(path)
    # the bundled sandbox: the demo's 7 days are every partition the UI shows
    bundled = load_settings(bundled_workspaces_file()).start_date
    assert bundled in {today - dt.timedelta(days=7), today - dt.timedelta(days=6)}


def test_a_bare_off_is_the_word_not_false(tmp_path):
    """YAML 1.1 reads `off` as false; the file means the word."""
    path = write(tmp_path, GOOD.replace("rate_limit_per_minute: 50",
                                        "rate_limit_per_minute: 50\n        flows: off\n"
                                        "        campaign_metadata: off"))  # fmt: skip
    ws = load_settings(path).workspace("WS_ALPHA")
    assert (ws.flows, ws.campaign_metadata, ws.finds_flows) == ("off", "off", False)
