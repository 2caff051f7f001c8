"""Slack alerts: failed runs and failed checks reach the team, with workspace, day and a link.

Each message is delivered once: messages go to an outbox kept in the sensor's cursor, and each
leaves it the moment Slack accepts it. A post that fails (Slack down, flapping, a revoked or unset
token) stops that tick's posting; it and the messages after it stay in the outbox and are posted
on a later tick, one by one, never again once accepted. The tick then says why, in its headline.

One message per incident, not per run: the failure sensor reads the runs that failed since its
last tick (its cursor), leaves out those Dagster's run retries will launch again (tag
`dagster/will_retry`; the last attempt says how many there were), and groups the rest by cause —
"WS_A, WS_B: 403 Forbidden … — 2024-11-08…11 (8 runs)" — with a link to the failed runs. At most
`MAX_MESSAGES_PER_HOUR` messages an hour; beyond, the runs are counted and one summary says how
many more failed once the hour allows it.

Built on dagster-slack's `SlackResource` and Dagster's run-status sensors. Why not
`make_slack_on_run_failure_sensor` itself: it builds its `WebClient` when the code loads, from a
token string and Slack's fixed URL. Here the token is read from its env var at each tick (never
in the code, the UI or a log) and the Web API's base URL is configurable (GovSlack, a proxy, a
local fake in the tests) — which its factory does not allow. The message texts are ours: they
name what a data engineer needs first (workspace, day, what failed, where to look).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from dagster import (
    AssetCheckSeverity,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)
from dagster._core.storage.tags import WILL_RETRY_TAG
from dagster_slack import SlackResource
from slack_sdk import WebClient

from moestats_dagster.config import SlackSettings
from moestats_dagster.messages import said
from moestats_dagster.orchestration.lib.metadata import DEFAULT_NAMING, Naming
from moestats_dagster.orchestration.lib.run_tags import partition_range, where, workspace_of

MAX_DETAIL = 600  # characters of one error or check message: Slack is for a headline + a link
MAX_CHECKS = 10  # failed checks listed in one message; the rest are counted
MAX_MESSAGES_PER_HOUR = 6  # failure messages; past it the runs are counted for one summary
MAX_RUNS_PER_TICK = 500  # failed runs read per tick (the next tick reads on from there)
RETRY_NUMBER_TAG = "dagster/retry_number"
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


@dataclass
class Failed:
    """A failed run as an alert needs it: where, what, how many attempts."""

    run: DagsterRun
    cause: str  # the first failure's message, as the run said it
    attempts: int

    @property
    def workspace(self) -> str:
        return workspace_of(self.run.tags) or "-"

    @property
    def days(self) -> list[dt.date]:
        start, end = partition_range(self.run.tags)
        try:
            first, last = (dt.date.fromisoformat(str(k).split("|")[0]) for k in (start, end))
        except (TypeError, ValueError):
            return []
        return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]

    def kind(self, workspaces: list[str]) -> str:
        """The cause with what differs between runs of one incident taken out (workspace ids,
        days, run and request ids), for grouping."""
        text = self.cause
        for ws in sorted(workspaces, key=len, reverse=True):
            text = text.replace(ws, "<ws>")
        text = re.sub(r"\d{4}-\d{2}-\d{2}", "<day>", text)
        text = re.sub(r"\b[0-9a-f]{8,}\b|moestats-[0-9a-f]+", "<id>", text)
        return f"{self.run.job_name}|{text[:160]}"


def failed_run(instance: DagsterInstance, run: DagsterRun) -> Failed:
    records = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.STEP_FAILURE)
    causes = [
        r.event_log_entry.dagster_event.step_failure_data.error.message
        for r in records.records
        if r.event_log_entry.dagster_event.step_failure_data
        and r.event_log_entry.dagster_event.step_failure_data.error
    ]
    if not causes:
        failure = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.RUN_FAILURE)
        causes = [r.event_log_entry.message for r in failure.records] or ["(no message)"]
    attempts = int(run.tags.get(RETRY_NUMBER_TAG, "0") or 0) + 1
    return Failed(run, " ".join(str(causes[0]).split()), attempts)


def group_failures(failed: list[Failed], workspaces: list[str]) -> list[list[Failed]]:
    """Failures of one cause together (across workspaces and days), in order of first seen."""
    groups: dict[str, list[Failed]] = {}
    for failure in failed:
        groups.setdefault(failure.kind(workspaces), []).append(failure)
    return list(groups.values())


def failure_text(settings: SlackSettings, group: list[Failed]) -> str:
    """One message for a group: who, what, which days, how many runs, where to look."""
    first = group[0]
    workspaces = sorted({f.workspace for f in group})
    days = sorted({d for f in group for d in f.days})
    span = "" if not days else f" — {_days_span(days)}"
    retried = max(f.attempts for f in group)
    attempts = f", after {retried} attempts" if retried > 1 else ""
    runs = f"{len(group)} runs" if len(group) > 1 else "1 run"
    link = (run_link(settings, first.run) if len(group) == 1 else
            f"<{settings.webserver_url}/runs?q%5B0%5D=status%3AFAILURE|Open the failed runs in "
            "Dagster>")  # fmt: skip
    return "\n".join([
        f":red_circle: *{mrkdwn(', '.join(workspaces), 300)}: {runs} failed{span}{attempts}* "
        f"(job `{mrkdwn(first.run.job_name, 200)}`)",
        f"• {mrkdwn(first.cause)}",
        link,
    ])  # fmt: skip


def _days_span(days: list[dt.date]) -> str:
    if len(days) == 1:
        return days[0].isoformat()
    return f"{days[0].isoformat()}…{days[-1]:%d} ({len(days)} days)" if (
        days[0].year, days[0].month) == (days[-1].year, days[-1].month) else (
        f"{days[0].isoformat()}…{days[-1].isoformat()} ({len(days)} days)")  # fmt: skip


@dataclass
class AlertCursor:
    """What the failure sensor remembers between ticks (its cursor, as JSON)."""

    after: float = 0.0  # update timestamp of the newest failed run handled
    seen: list[str] = field(default_factory=list)  # run ids handled at exactly that timestamp
    posted: list[float] = field(default_factory=list)  # when messages went out (last hour)
    held: int = 0  # failed runs not posted because of the hourly cap
    outbox: list[list] = field(default_factory=list)  # [text, runs] not yet accepted by Slack

    @classmethod
    def load(cls, text: str | None) -> AlertCursor:
        if not text:
            return cls(after=time.time() - 3600)  # a new sensor starts with the last hour
        return cls(**json.loads(text))

    def dump(self) -> str:
        return json.dumps(self.__dict__)

    def runs_since(self, instance: DagsterInstance, status: DagsterRunStatus) -> list:
        """The run records of `status` ended since the cursor, not handled yet, oldest first (at
        most MAX_RUNS_PER_TICK: the next tick reads on); the cursor moves past them."""
        records = instance.get_run_records(
            RunsFilter(statuses=[status],
                       updated_after=dt.datetime.fromtimestamp(self.after, dt.UTC)),
            order_by="update_timestamp", ascending=True, limit=MAX_RUNS_PER_TICK,
        )  # fmt: skip
        new = [r for r in records if r.dagster_run.run_id not in self.seen]
        if new:
            newest = max(r.update_timestamp.timestamp() for r in new)
            at_newest = [r.dagster_run.run_id for r in new
                         if r.update_timestamp.timestamp() == newest]  # fmt: skip
            self.seen = at_newest + (self.seen if newest == self.after else [])
            self.after = newest
        return new

    def room(self, now: float) -> int:
        self.posted = [t for t in self.posted if t > now - 3600]
        return max(0, MAX_MESSAGES_PER_HOUR - len(self.posted))

    def queue(self, texts: list[tuple[str, int]], now: float) -> None:
        """New messages into the outbox, as far as the hourly cap leaves room for them (with
        what already waits there); the runs of the rest are counted for one summary."""
        free = max(0, self.room(now) - len(self.outbox))
        self.outbox += [[text, runs] for text, runs in texts[:free]]
        self.held += sum(runs for _, runs in texts[free:])

    def deliver(self, settings: SlackSettings, now: float) -> tuple[int, str | None]:
        """Post the outbox in order, each message marked delivered the moment Slack accepts it;
        the first post that fails ends this tick's posting (it is tried again on a later tick).
        Returns how many were delivered and, when one was not, why."""
        if not self.outbox:
            return 0, None
        try:
            client = slack_client(settings)
        except SlackTokenMissingError as exc:
            return 0, str(exc)
        delivered = 0
        while self.outbox and self.room(now):
            text, _ = self.outbox[0]
            try:
                client.chat_postMessage(channel=settings.channel, text=text)
            except Exception as exc:  # noqa: BLE001 (any failure: kept, tried again later)
                return delivered, f"Slack did not take the message ({_slack_said(exc)})"
            self.outbox.pop(0)
            self.posted.append(now)
            delivered += 1
        return delivered, None


def _slack_said(exc: BaseException) -> str:
    """Slack's own error code when it gave one (`invalid_auth`), else the exception's line."""
    response = getattr(exc, "response", None)
    code = response.get("error") if hasattr(response, "get") else None
    status = getattr(response, "status_code", None)
    return f"Slack answered {code}" + (f" (HTTP {status})" if status else "") if code else (
        said(exc, 300))  # fmt: skip


def _deliver_and_say(context: SensorEvaluationContext, state: AlertCursor, settings: SlackSettings,
              read: str) -> SkipReason | None:  # fmt: skip
    """Deliver the outbox, keep the cursor, and say what happened (the tick's headline)."""
    sent, why = state.deliver(settings, time.time())
    context.update_cursor(state.dump())
    if why is not None:
        context.log.error(f"{why}; {len(state.outbox)} message(s) kept, posted on a later tick")
        return SkipReason(f"{why}; {sent} delivered, {len(state.outbox)} kept for a later tick")
    if not sent:
        return SkipReason(read + (f" ({state.held} held by the hourly cap)" if state.held else ""))
    return None


def failed_checks(instance: DagsterInstance, run: DagsterRun) -> list:
    """The run's check evaluations that did not pass (WARN and ERROR), less those that only
    repeat an anomaly already posted for the same day (restatement runs re-judge it)."""
    records = instance.get_records_for_run(
        run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    evaluations = (r.event_log_entry.dagster_event.event_specific_data for r in records)
    return [
        e for e in evaluations
        if e is not None and not e.passed
        and not getattr(e.metadata.get("already_reported"), "value", False)
    ]  # fmt: skip


def checks_text(settings: SlackSettings, runs: list[DagsterRun], failed: Iterable) -> str:
    """One message for the failed checks of the runs finished since the last tick."""
    failed, run = list(failed), runs[0]
    if len(runs) == 1:
        head = f"{mrkdwn(where(run), 200)}* (job `{mrkdwn(run.job_name, 200)}`)"
    else:
        workspaces = sorted({workspace_of(r.tags) or "-" for r in runs})
        head = f"{mrkdwn(', '.join(workspaces), 300)}, {len(runs)} runs*"
    lines = [f":warning: *{len(failed)} check(s) failed — {head}"]
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
    lines.append(run_link(settings, run) if len(runs) == 1 else
                 f"<{settings.webserver_url}/runs|Open the runs in Dagster>")  # fmt: skip
    return "\n".join(lines)


def build_alert_sensors(
    settings: SlackSettings | None,
    naming: Naming = DEFAULT_NAMING,
    job_names: frozenset[str] = frozenset(),
    workspaces: tuple[str, ...] = (),
) -> list:
    """Sensors posting to Slack; none when the workspaces file has no `alerts.slack`. On by
    default once configured: configuring them is the opt-in. `job_names`: the jobs whose failed
    runs are ours, besides the asset jobs (`__ASSET_JOB`: backfills and the UI's Materialize)."""
    if settings is None:
        return []
    job_names = frozenset(job_names)
    workspaces = list(workspaces)

    def ours(run: DagsterRun) -> bool:  # our jobs, and the asset jobs (backfills, the UI)
        return run.job_name in job_names or run.job_name.startswith("__")

    @sensor(
        name=naming.name("slack_on_run_failure"),
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
        description=f"Posts the failed runs of this code location to {settings.channel}: one "
        "message per cause per tick, runs Dagster will retry left out, at most "
        f"{MAX_MESSAGES_PER_HOUR} messages an hour (then one summary of the rest).",
    )
    def slack_on_run_failure(context: SensorEvaluationContext):
        state = AlertCursor.load(context.cursor)
        new = state.runs_since(context.instance, DagsterRunStatus.FAILURE)
        final = [failed_run(context.instance, r.dagster_run) for r in new
                 if ours(r.dagster_run) and r.dagster_run.tags.get(WILL_RETRY_TAG) != "true"]  # fmt: skip
        groups = group_failures(final, workspaces)
        now = time.time()
        state.queue([(failure_text(settings, g), len(g)) for g in groups], now)
        if state.held and not state.outbox and state.room(now) and not groups:
            state.outbox.append([f":red_circle: *{state.held} more failed run(s)* were not posted "
                                 f"in the last hour (at most {MAX_MESSAGES_PER_HOUR} messages an "
                                 f"hour): <{settings.webserver_url}/runs?q%5B0%5D=status%3AFAILURE"
                                 "|Open the failed runs in Dagster>", 0])  # fmt: skip
            state.held = 0
        return _deliver_and_say(context, state, settings,
                         f"{len(new)} failed run(s) read, nothing to post")  # fmt: skip

    sensors = [slack_on_run_failure]
    if settings.checks:

        @sensor(
            name=naming.name("slack_on_failed_checks"),
            default_status=DefaultSensorStatus.RUNNING,
            minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
            description=f"Posts the failed checks (WARN or ERROR) of the runs finished since its "
            f"last tick to {settings.channel}: one message per tick, not one per run or check; "
            f"at most {MAX_MESSAGES_PER_HOUR} an hour.",
        )
        def slack_on_failed_checks(context: SensorEvaluationContext):
            state = AlertCursor.load(context.cursor)
            new = state.runs_since(context.instance, DagsterRunStatus.SUCCESS)
            found = [(r.dagster_run, failed_checks(context.instance, r.dagster_run)) for r in new
                     if ours(r.dagster_run)]  # fmt: skip
            found = [(run, failed) for run, failed in found if failed]
            if found:
                text = checks_text(settings, [run for run, _ in found],
                                   [e for _, failed in found for e in failed])  # fmt: skip
                state.queue([(text, len(found))], time.time())
            return _deliver_and_say(context, state, settings,
                             f"{len(new)} finished run(s) read, no failed check")  # fmt: skip

        sensors.append(slack_on_failed_checks)
    return sensors
