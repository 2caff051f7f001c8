"""The nightly schedule: each workspace's yesterday (+ restatement window) after *its* day ended.

Campaign metadata, the summary and the report follow by themselves (assets/automation.py); the
freshness check runs at its deadline through its own automation condition (assets/freshness.py).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from .assets.metadata import DEFAULT_NAMING, Naming
from .config import Settings
from .partitions import partition_key

KIND_TAG = "moestats/kind"  # daily | restatement: what a run is, in the UI's run list
DAY_TAG = "moestats/days_late"  # 1 for yesterday, 2.. for restated days
TICK_MINUTES = 15  # fine enough for zones 30 or 45 minutes off the hour (Kolkata, Kathmandu)


def nightly_requests(
    settings: Settings, today: dt.date, workspace_ids: list[str] | None = None
) -> list[RunRequest]:
    """One run per workspace x day: yesterday, then the `restatement_days` before it.

    Conversions keep arriving after the day (attribution windows), so recent days are re-fetched
    and their slices replaced, never appended. `today` is the workspaces' local date.
    """
    chosen = workspace_ids if workspace_ids is not None else [ws.id for ws in settings.workspaces]
    requests = []
    for days_late in range(1, settings.restatement_days + 2):
        day = today - dt.timedelta(days=days_late)
        if day < settings.start_date:
            continue
        for ws_id in chosen:
            key = partition_key(day, ws_id)
            requests.append(
                RunRequest(
                    run_key=f"{today.isoformat()}:{key}",
                    partition_key=key,
                    tags={
                        KIND_TAG: "daily" if days_late == 1 else "restatement",
                        DAY_TAG: str(days_late),
                    },
                )
            )
    return requests


def due_workspaces(settings: Settings, tick: dt.datetime) -> dict[dt.date, list[str]]:
    """Workspaces whose local clock passed `schedule_hour` between the previous tick and this
    one, by their local date. Once per local day whatever DST does: a skipped hour fires at the
    first tick after it, a repeated hour does not fire twice."""
    due: dict[dt.date, list[str]] = {}
    at = dt.time(settings.schedule_hour)
    before = tick - dt.timedelta(minutes=TICK_MINUTES)
    for ws in settings.workspaces:
        zone = ZoneInfo(settings.zone(ws.id))
        now, prev = tick.astimezone(zone), before.astimezone(zone)
        if now.time() >= at and (prev.date() < now.date() or prev.time() < at):
            due.setdefault(now.date(), []).append(ws.id)
    return due


def build_schedules(settings: Settings, daily_job, naming: Naming = DEFAULT_NAMING):
    """The schedules, on the given job (an asset job, resolved by Definitions)."""
    zones = sorted({settings.zone(ws.id) for ws in settings.workspaces})

    @schedule(
        name=naming.name("nightly"),
        cron_schedule=f"*/{TICK_MINUTES} * * * *",
        execution_timezone="UTC",
        job=daily_job,
        default_status=DefaultScheduleStatus.STOPPED,
        description=(
            f"At {settings.schedule_hour:02d}:00 in each workspace's own time zone "
            f"({', '.join(zones)}): its yesterday, plus the {settings.restatement_days} days "
            "before it again so late conversions land (restatement). Ticks every "
            f"{TICK_MINUTES} min; a tick with no workspace due requests nothing."
        ),
    )
    def nightly(context: ScheduleEvaluationContext):
        tick = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
        requests = [
            request
            for today, ids in due_workspaces(settings, tick).items()
            for request in nightly_requests(settings, today, ids)
        ]
        if not requests:
            return SkipReason(
                f"no workspace reached {settings.schedule_hour:02d}:00 local time since the "
                "last tick"
            )
        return requests

    return [nightly]
