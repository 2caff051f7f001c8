"""Slack alerts: a failed run and a failed check reach the team, with workspace, day and a link.

Built on dagster-slack's `SlackResource` and Dagster's run-status sensors. Why not
`make_slack_on_run_failure_sensor` itself: it builds its `WebClient` when the code loads, from a
token string and Slack's fixed URL. Here the token is read from its env var at each tick (never
in the code, the UI or a log) and the Web API's base URL is configurable (GovSlack, a proxy, a
local fake in the tests) — which its factory does not allow. The message texts are ours: they
name what a data engineer needs first (workspace, day, what failed, where to look).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from dagster import (
    AssetCheckSeverity,
    DagsterEventType,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunStatusSensorContext,
    run_failure_sensor,
    run_status_sensor,
)
from dagster_slack import SlackResource
from slack_sdk import WebClient

from moestats_dagster.config import SlackSettings
from moestats_dagster.orchestration.assets.metadata import DEFAULT_NAMING, Naming
from moestats_dagster.orchestration.run_coordinator import where

MAX_DETAIL = 600  # characters of one error or check message: Slack is for a headline + a link
MAX_CHECKS = 10  # failed checks listed in one message; the rest are counted
SENSOR_INTERVAL_SECONDS = 30


class SlackAlertsResource(SlackResource):
    """dagster-slack's resource, with the Web API's base URL configurable."""

    base_url: str = "https://slack.com/api/"
    timeout_seconds: int = 10  # a hung Slack never holds a sensor tick for long

    def get_client(self) -> WebClient:
        return WebClient(token=self.token, base_url=self.base_url, timeout=self.timeout_seconds)


def slack_client(settings: SlackSettings) -> WebClient:
    """A client for this tick, the token read from its env var now (never stored with the
    definitions, so no resource key of ours can collide with a team's own `slack`)."""
    token = os.environ.get(settings.token_env, "").strip()
    if not token:
        raise SlackTokenMissingError(
            f"alerts.slack: environment variable {settings.token_env} is not set where the "
            "Dagster daemon runs; set it to the Slack bot token (xoxb-…), or remove alerts.slack "
            "from the workspaces file to turn alerts off"
        )
    return SlackAlertsResource(token=token, base_url=settings.base_url).get_client()


class SlackTokenMissingError(RuntimeError):
    pass


def mrkdwn(text: object, limit: int = MAX_DETAIL) -> str:
    """Text from the network, a config file or a user, made inert for Slack: on one line, capped,
    and `&`, `<`, `>` escaped as Slack's mrkdwn rules ask — so an upstream campaign id such as
    `<!channel> <https://evil.example|re-auth>` is shown as written, never as a ping or a link."""
    text = " ".join(str(text or "").split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def run_link(settings: SlackSettings, run: DagsterRun) -> str:
    # Our own link: the URL was validated as http(s) when the settings were read, the id is a UUID.
    return f"<{settings.webserver_url}/runs/{run.run_id}|Open run {run.run_id[:8]} in Dagster>"


def failure_text(settings: SlackSettings, context: RunFailureSensorContext) -> str:
    run = context.dagster_run
    causes = [
        f"• {mrkdwn(event.step_key, 200)}: {mrkdwn(event.step_failure_data.error.message)}"
        for event in context.get_step_failure_events()
        if event.step_failure_data and event.step_failure_data.error
    ] or [f"• {mrkdwn(context.failure_event.message)}"]
    return "\n".join(
        [f":red_circle: *Run failed — {mrkdwn(where(run), 200)}* (job `{mrkdwn(run.job_name, 200)}`)",
         *causes, run_link(settings, run)]
    )  # fmt: skip


def failed_checks(context: RunStatusSensorContext) -> list:
    """The run's check evaluations that did not pass (WARN and ERROR), less those that only
    repeat an anomaly already posted for the same day (restatement runs re-judge it)."""
    records = context.instance.get_records_for_run(
        context.dagster_run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    evaluations = (r.event_log_entry.dagster_event.event_specific_data for r in records)
    return [
        e for e in evaluations
        if e is not None and not e.passed
        and not getattr(e.metadata.get("already_reported"), "value", False)
    ]  # fmt: skip


def checks_text(settings: SlackSettings, run: DagsterRun, failed: Iterable) -> str:
    failed = list(failed)
    lines = [f":warning: *{len(failed)} check(s) failed — {mrkdwn(where(run), 200)}* "
             f"(job `{mrkdwn(run.job_name, 200)}`)"]  # fmt: skip
    for evaluation in failed[:MAX_CHECKS]:
        severity = "ERROR" if evaluation.severity == AssetCheckSeverity.ERROR else "WARN"
        summary = evaluation.metadata.get("summary")
        detail = summary.value if summary is not None else evaluation.description
        partition = f" [{mrkdwn(evaluation.partition, 200)}]" if evaluation.partition else ""
        lines.append(
            f"• {mrkdwn('/'.join(evaluation.asset_key.path), 200)} · "
            f"{mrkdwn(evaluation.check_name, 200)} ({severity}){partition}: {mrkdwn(detail)}"
        )
    if len(failed) > MAX_CHECKS:
        lines.append(f"• … and {len(failed) - MAX_CHECKS} more")
    lines.append(run_link(settings, run))
    return "\n".join(lines)


def build_alert_sensors(settings: SlackSettings | None, naming: Naming = DEFAULT_NAMING) -> list:
    """Sensors posting to Slack; none when the workspaces file has no `alerts.slack`. On by
    default once configured: configuring them is the opt-in."""
    if settings is None:
        return []

    @run_failure_sensor(
        name=naming.name("slack_on_run_failure"),
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
        description=f"Posts every failed run of this code location to {settings.channel}.",
    )
    def slack_on_run_failure(context: RunFailureSensorContext):
        text = failure_text(settings, context)
        slack_client(settings).chat_postMessage(channel=settings.channel, text=text)

    sensors = [slack_on_run_failure]
    if settings.checks:

        @run_status_sensor(
            name=naming.name("slack_on_failed_checks"),
            run_status=DagsterRunStatus.SUCCESS,
            default_status=DefaultSensorStatus.RUNNING,
            minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
            description=f"Posts the failed checks (WARN or ERROR) of a finished run to "
            f"{settings.channel}: one message per run, not one per check.",
        )
        def slack_on_failed_checks(context: RunStatusSensorContext):
            failed = failed_checks(context)
            if failed:
                text = checks_text(settings, context.dagster_run, failed)
                slack_client(settings).chat_postMessage(channel=settings.channel, text=text)

        sensors.append(slack_on_failed_checks)
    return sensors
