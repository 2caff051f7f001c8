"""Slack alerts: a failed run and failed checks reach a (fake) Slack Web API over HTTP."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    build_run_status_sensor_context,
    build_sensor_context,
)
from dagster._core.storage.tags import WILL_RETRY_TAG

from moestats_dagster.config import WorkspacesFileError, load_settings
from moestats_dagster_tests.conftest import ALPHA_KEY
from moestats_dagster_tests.fake_slack import FakeSlack
from moestats_dagster_tests.helpers import build, run_partition

TOKEN = "xoxb-test-token"
DAY = dt.date(2024, 12, 3)
SLACK = {"channel": "#marketing-data", "token_env": "TEST_SLACK_TOKEN",
         "webserver_url": "http://dagster.example.com:3000"}  # fmt: skip


def _with_slack(path, base_url: str, **options) -> None:
    slack = {**SLACK, "base_url": base_url, **options}
    lines = "".join(f"    {k}: {v!r}\n" for k, v in slack.items())
    path.write_text(path.read_text() + "alerts:\n  slack:\n" + lines)


def _event(instance: DagsterInstance, run_id: str, kind: DagsterEventType):
    records = instance.get_records_for_run(run_id, of_type=kind).records
    return records[-1].event_log_entry.dagster_event


def _failed_run(server, write_workspaces, database, limiter_dir, slack_url: str):
    """A workspace with a wrong API key, Slack configured, and one failed partition run."""
    path = write_workspaces(server, {"id": "WS_ALPHA", "api_key": "not-the-key"})
    _with_slack(path, slack_url)
    defs = build(path, database, limiter_dir)
    instance = DagsterInstance.ephemeral()
    result = run_partition(defs, DAY, "WS_ALPHA", instance, raise_on_error=False)
    assert not result.success
    return defs, instance, result


def _evaluate(defs, sensor_name: str, instance, run_id: str, kind: DagsterEventType):
    sensor = defs.resolve_sensor_def(sensor_name)
    if kind == DagsterEventType.RUN_FAILURE:  # reads the failed runs since its cursor itself
        return sensor(build_sensor_context(instance=instance))
    context = build_run_status_sensor_context(
        sensor_name=sensor_name,
        dagster_event=_event(instance, run_id, kind),
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run_id),
    )
    sensor(context)


def test_a_failed_run_posts_workspace_day_cause_and_link(
    make_sandbox, write_workspaces, database, limiter_dir, monkeypatch
):
    monkeypatch.setenv("TEST_SLACK_TOKEN", TOKEN)
    with FakeSlack(TOKEN) as slack:
        defs, instance, result = _failed_run(
            make_sandbox(), write_workspaces, database, limiter_dir, slack.base_url
        )
        _evaluate(defs, "moestats_slack_on_run_failure", instance, result.run_id,
                  DagsterEventType.RUN_FAILURE)  # fmt: skip
    [message] = slack.messages
    assert message["channel"] == "#marketing-data"
    text = message["text"]
    assert "WS_ALPHA: 1 run failed — 2024-12-03" in text
    assert "401" in text and "API key" in text  # what failed, in the client's words
    assert f"<http://dagster.example.com:3000/runs/{result.run_id}|" in text
    assert "not-the-key" not in text and TOKEN not in text


HOSTILE = "<!channel> <https://evil.example/login|Click to re-auth> & more"


def test_text_from_upstream_reaches_slack_escaped_never_as_a_ping_or_link(
    make_sandbox, write_workspaces, database, limiter_dir, monkeypatch
):
    from moestats_dagster.sandbox.app import HttpError

    server = make_sandbox()
    server.app.route(  # a gateway's error body quoting a hostile campaign id, and a lot of it
        "/core-services/v1/campaign-stats",
        lambda ws, body: (_ for _ in ()).throw(HttpError(400, f"bad campaign {HOSTILE} " * 50)),
        access="stats_access",
    )
    monkeypatch.setenv("TEST_SLACK_TOKEN", TOKEN)
    path = write_workspaces(server, {"id": "WS_ALPHA", "api_key": ALPHA_KEY})
    with FakeSlack(TOKEN) as slack:
        _with_slack(path, slack.base_url)
        defs = build(path, database, limiter_dir)
        instance = DagsterInstance.ephemeral()
        result = run_partition(defs, DAY, "WS_ALPHA", instance, raise_on_error=False)
        assert not result.success
        _evaluate(defs, "moestats_slack_on_run_failure", instance, result.run_id,
                  DagsterEventType.RUN_FAILURE)  # fmt: skip
    [message] = slack.messages
    text = message["text"]
    assert "&lt;!channel&gt; &lt;https://evil.example/login|Click to re-auth&gt; &amp; more" in text
    assert "<!channel>" not in text and "<https://evil" not in text
    assert text.count("<") == 1  # our own link to the run, nothing else
    assert len(text) < 1200  # capped: a headline and a link, not the whole body


def test_failed_checks_are_posted_once_and_passing_runs_stay_quiet(
    make_sandbox, write_workspaces, database, limiter_dir, monkeypatch
):
    monkeypatch.setenv("TEST_SLACK_TOKEN", TOKEN)
    server = make_sandbox(defects={"wrong_ctr", "wrong_sent_rate"})
    path = write_workspaces(server, {"id": "WS_ALPHA", "api_key": ALPHA_KEY})
    with FakeSlack(TOKEN) as slack:
        _with_slack(path, slack.base_url)
        defs = build(path, database, limiter_dir)
        instance = DagsterInstance.ephemeral()
        result = run_partition(defs, DAY, "WS_ALPHA", instance)
        sensor = defs.resolve_sensor_def("moestats_slack_on_failed_checks")
        context = build_sensor_context(instance=instance)
        sensor(context)
        sensor(build_sensor_context(instance=instance, cursor=context.cursor))  # not twice
        server.app.faults.defects.clear()
        run_partition(defs, DAY, "WS_ALPHA", instance)
        sensor(build_sensor_context(instance=instance, cursor=context.cursor))
    [message] = slack.messages  # the clean run posted nothing
    text = message["text"]
    assert "2 check(s) failed — WS_ALPHA, 2024-12-03" in text
    assert "moestats/performance_stats · ctr_matches_formula (WARN)" in text
    assert "sent_rate_matches_formula (WARN)" in text
    assert f"/runs/{result.run_id}|" in text


def test_a_bad_token_is_the_ticks_headline_and_the_alert_waits_for_a_good_one(
    sandbox, write_workspaces, database, limiter_dir, monkeypatch
):
    monkeypatch.setenv("TEST_SLACK_TOKEN", "xoxb-revoked")
    with FakeSlack(TOKEN) as slack:
        defs, instance, result = _failed_run(
            sandbox, write_workspaces, database, limiter_dir, slack.base_url
        )
        sensor = defs.resolve_sensor_def("moestats_slack_on_run_failure")
        context = build_sensor_context(instance=instance)
        skipped = sensor(context)
        assert "Slack answered invalid_auth" in skipped.skip_message
        assert "1 kept for a later tick" in skipped.skip_message and slack.messages == []
        monkeypatch.setenv("TEST_SLACK_TOKEN", TOKEN)  # fixed: the alert goes out, once
        sensor(build_sensor_context(instance=instance, cursor=context.cursor))
    [message] = slack.messages
    assert "WS_ALPHA: 1 run failed" in message["text"]
    assert "xoxb" not in str(skipped.skip_message)


def test_alerts_are_off_unless_configured_and_misconfiguration_is_named(
    sandbox, write_workspaces, database, limiter_dir
):
    path = write_workspaces(sandbox, {"id": "WS_ALPHA", "api_key": ALPHA_KEY})
    defs = build(path, database, limiter_dir)
    assert not [s for s in defs.sensors if "slack" in s.name]
    _with_slack(path, "https://slack.com/api/", token_env="xoxb-1234-secret")
    with pytest.raises(
        WorkspacesFileError, match="token_env: this looks like a key, not a variable name"
    ):
        load_settings(path)


def test_an_unset_token_variable_is_named(
    sandbox, write_workspaces, database, limiter_dir, monkeypatch
):
    monkeypatch.delenv("TEST_SLACK_TOKEN", raising=False)
    defs, instance, result = _failed_run(
        sandbox, write_workspaces, database, limiter_dir, "http://127.0.0.1:9/api/"
    )
    skipped = _evaluate(defs, "moestats_slack_on_run_failure", instance, result.run_id,
                        DagsterEventType.RUN_FAILURE)  # fmt: skip
    # the tick's headline names the cause, not Dagster's "error in evaluation_fn"
    assert "environment variable TEST_SLACK_TOKEN is not set" in skipped.skip_message


def test_twenty_failed_runs_are_one_message_naming_them_all_and_not_posted_twice(
    make_sandbox, write_workspaces, database, limiter_dir, monkeypatch
):
    """5 workspaces x 4 days of 403 (the Stats API not enabled): before, 20 messages."""
    from moestats_dagster.sandbox.app import SandboxWorkspace

    ids = [f"WS_{n}" for n in range(5)]
    server = make_sandbox(workspaces=[SandboxWorkspace(ws, "k", stats_access=False) for ws in ids])
    monkeypatch.setenv("TEST_SLACK_TOKEN", TOKEN)
    path = write_workspaces(server, *({"id": ws, "api_key": "k"} for ws in ids))
    with FakeSlack(TOKEN) as slack:
        _with_slack(path, slack.base_url)
        defs = build(path, database, limiter_dir)
        instance = DagsterInstance.ephemeral()
        for ws in ids:
            for n in range(4):
                run = run_partition(defs, DAY + dt.timedelta(days=n), ws, instance,
                                    raise_on_error=False)  # fmt: skip
                assert not run.success
        sensor = defs.resolve_sensor_def("moestats_slack_on_run_failure")
        context = build_sensor_context(instance=instance)
        sensor(context)
        sensor(build_sensor_context(instance=instance, cursor=context.cursor))  # nothing new
    [message] = slack.messages
    text = message["text"]
    assert f"{', '.join(ids)}: 20 runs failed — 2024-12-03…06 (4 days)" in text
    assert "403" in text and "Stats API" in text
    assert "runs?q%5B0%5D=status%3AFAILURE|Open the failed runs in Dagster>" in text


def test_a_run_dagster_will_retry_posts_nothing_and_its_last_attempt_says_how_many(
    sandbox, write_workspaces, database, limiter_dir, monkeypatch
):
    monkeypatch.setenv("TEST_SLACK_TOKEN", TOKEN)
    with FakeSlack(TOKEN) as slack:
        defs, instance, first = _failed_run(
            sandbox, write_workspaces, database, limiter_dir, slack.base_url
        )
        instance.add_run_tags(first.run_id, {WILL_RETRY_TAG: "true"})  # as Dagster tags it
        sensor = defs.resolve_sensor_def("moestats_slack_on_run_failure")
        context = build_sensor_context(instance=instance)
        sensor(context)
        assert slack.messages == []  # the retry will come
        last = run_partition(defs, DAY, "WS_ALPHA", instance, raise_on_error=False)
        instance.add_run_tags(last.run_id, {WILL_RETRY_TAG: "false", "dagster/retry_number": "2"})
        sensor(build_sensor_context(instance=instance, cursor=context.cursor))
    [message] = slack.messages  # one message for the partition, however many attempts
    assert "WS_ALPHA: 1 run failed — 2024-12-03, after 3 attempts" in message["text"]


def test_past_the_hourly_cap_the_rest_is_counted_in_one_summary(
    make_sandbox, write_workspaces, database, limiter_dir, monkeypatch
):
    from moestats_dagster.orchestration.defs import alerts
    from moestats_dagster.sandbox.app import SandboxWorkspace

    monkeypatch.setattr(alerts, "MAX_MESSAGES_PER_HOUR", 1)
    ids = ["WS_A", "WS_B"]  # two causes: a 403 and a 401
    server = make_sandbox(workspaces=[SandboxWorkspace("WS_A", "k", stats_access=False),
                                      SandboxWorkspace("WS_B", "k")])  # fmt: skip
    monkeypatch.setenv("TEST_SLACK_TOKEN", TOKEN)
    path = write_workspaces(server, {"id": "WS_A", "api_key": "k"},
                            {"id": "WS_B", "api_key": "wrong"})  # fmt: skip
    with FakeSlack(TOKEN) as slack:
        _with_slack(path, slack.base_url)
        defs = build(path, database, limiter_dir)
        instance = DagsterInstance.ephemeral()
        for ws in ids:
            run_partition(defs, DAY, ws, instance, raise_on_error=False)
        sensor = defs.resolve_sensor_def("moestats_slack_on_run_failure")
        context = build_sensor_context(instance=instance)
        sensor(context)
        state = alerts.AlertCursor.load(context.cursor)
        assert len(slack.messages) == 1 and state.held == 1  # the second cause is counted
        state.posted = []  # an hour later
        sensor(build_sensor_context(instance=instance, cursor=state.dump()))
    first, summary = slack.messages
    assert "1 more failed run(s)" in summary["text"]


def test_failed_checks_of_many_runs_are_one_message(
    make_sandbox, write_workspaces, database, limiter_dir, monkeypatch
):
    monkeypatch.setenv("TEST_SLACK_TOKEN", TOKEN)
    server = make_sandbox(defects={"wrong_ctr"})
    path = write_workspaces(server, {"id": "WS_ALPHA", "api_key": ALPHA_KEY},
                            {"id": "WS_BETA", "api_key": "sandbox-key-beta"})  # fmt: skip
    with FakeSlack(TOKEN) as slack:
        _with_slack(path, slack.base_url)
        defs = build(path, database, limiter_dir)
        instance = DagsterInstance.ephemeral()
        for ws in ("WS_ALPHA", "WS_BETA"):
            for n in range(2):
                run_partition(defs, DAY + dt.timedelta(days=n), ws, instance)
        defs.resolve_sensor_def("moestats_slack_on_failed_checks")(
            build_sensor_context(instance=instance)
        )
    [message] = slack.messages  # one message for every run with a failed check
    assert re.search(r"check\(s\) failed — WS_ALPHA, WS_BETA, [34] runs", message["text"])
    assert "ctr_matches_formula (WARN)" in message["text"]


def _two_causes(make_sandbox, write_workspaces, database, limiter_dir, monkeypatch, slack):
    """WS_A answers 403, WS_B 401: two causes, two messages a tick."""
    from moestats_dagster.sandbox.app import SandboxWorkspace

    server = make_sandbox(workspaces=[SandboxWorkspace("WS_A", "k", stats_access=False),
                                      SandboxWorkspace("WS_B", "k")])  # fmt: skip
    monkeypatch.setenv("TEST_SLACK_TOKEN", TOKEN)
    path = write_workspaces(server, {"id": "WS_A", "api_key": "k"},
                            {"id": "WS_B", "api_key": "wrong"})  # fmt: skip
    _with_slack(path, slack.base_url)
    return build(path, database, limiter_dir), DagsterInstance.ephemeral()


def test_a_flapping_slack_delivers_each_alert_once(
    make_sandbox, write_workspaces, database, limiter_dir, monkeypatch
):
    with FakeSlack(TOKEN) as slack:
        slack.failing = lambda n: n % 2 == 0  # every other post fails
        defs, instance = _two_causes(make_sandbox, write_workspaces, database, limiter_dir,
                                     monkeypatch, slack)  # fmt: skip
        sensor = defs.resolve_sensor_def("moestats_slack_on_run_failure")
        cursor = None
        for day in range(3):  # three nights of the same two failures, ticks in between
            for ws in ("WS_A", "WS_B"):
                run_partition(defs, DAY + dt.timedelta(days=day), ws, instance,
                              raise_on_error=False)  # fmt: skip
            for _ in range(3):
                context = build_sensor_context(instance=instance, cursor=cursor)
                sensor(context)
                cursor = context.cursor
        assert slack.posts > len(slack.messages)  # some posts did fail
    texts = [m["text"] for m in slack.messages]
    assert len(texts) == len(set(texts)) == 6  # every failed run's message, none twice
    for day in range(3):
        when = (DAY + dt.timedelta(days=day)).isoformat()
        assert sum(f"WS_A: 1 run failed — {when}" in t for t in texts) == 1
        assert sum(f"WS_B: 1 run failed — {when}" in t for t in texts) == 1


def test_a_slack_down_for_minutes_gets_every_alert_once_when_it_is_back(
    make_sandbox, write_workspaces, database, limiter_dir, monkeypatch
):
    with FakeSlack(TOKEN) as slack:
        slack.failing = lambda n: True  # down
        defs, instance = _two_causes(make_sandbox, write_workspaces, database, limiter_dir,
                                     monkeypatch, slack)  # fmt: skip
        sensor = defs.resolve_sensor_def("moestats_slack_on_run_failure")
        cursor = None
        for ws in ("WS_A", "WS_B"):
            run_partition(defs, DAY, ws, instance, raise_on_error=False)
        for _ in range(4):  # ticks while Slack is down: each says so, nothing is lost
            context = build_sensor_context(instance=instance, cursor=cursor)
            skipped = sensor(context)
            cursor = context.cursor
            assert "internal_error" in skipped.skip_message and "2 kept" in skipped.skip_message
        slack.failing = None  # back
        for _ in range(2):
            context = build_sensor_context(instance=instance, cursor=cursor)
            sensor(context)
            cursor = context.cursor
    texts = [m["text"] for m in slack.messages]
    assert len(texts) == 2 and "WS_A: 1 run failed" in texts[0] and "WS_B" in texts[1]
