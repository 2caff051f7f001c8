"""The nightly schedules: stats (yesterday + restatement window, every workspace), then metadata.

The freshness check runs at its deadline through its own automation condition (assets/freshness.py).
"""

from __future__ import annotations

import datetime as dt

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    schedule,
)

from .config import Settings
from .partitions import partition_key

KIND_TAG = "moestats/kind"  # daily | restatement: what a run is, in the UI's run list
DAY_TAG = "moestats/days_late"  # 1 for yesterday, 2.. for restated days


def nightly_requests(settings: Settings, today: dt.date) -> list[RunRequest]:
    """One run per workspace x day: yesterday, then the `restatement_days` before it.

    Conversions keep arriving after the day (attribution windows), so recent days are re-fetched
    and their slices replaced, never appended.
    """
    requests = []
    for days_late in range(1, settings.restatement_days + 2):
        day = today - dt.timedelta(days=days_late)
        if day < settings.start_date:
            continue
        for ws in settings.workspaces:
            key = partition_key(day, ws.id)
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


CAMPAIGNS_DELAY_HOURS = 2  # after the nightly stats run, so new campaign ids have landed


def build_schedules(settings: Settings, daily_job, campaigns_job):
    """The schedules, on the given jobs (asset jobs, resolved by Definitions)."""

    @schedule(
        name="moestats_nightly",
        cron_schedule=f"0 {settings.schedule_hour} * * *",
        execution_timezone=settings.timezone,
        job=daily_job,
        default_status=DefaultScheduleStatus.STOPPED,
        description=(
            f"Yesterday for every workspace, plus the {settings.restatement_days} days before it "
            "again so late conversions land (restatement)."
        ),
    )
    def moestats_nightly(context: ScheduleEvaluationContext) -> list[RunRequest]:
        tick = context.scheduled_execution_time
        return nightly_requests(settings, tick.date())

    @schedule(
        name="moestats_campaigns_nightly",
        cron_schedule=f"0 {(settings.schedule_hour + CAMPAIGNS_DELAY_HOURS) % 24} * * *",
        execution_timezone=settings.timezone,
        job=campaigns_job,
        default_status=DefaultScheduleStatus.STOPPED,
        description="Campaign metadata and summary views of every workspace, after the stats.",
    )
    def moestats_campaigns_nightly(context: ScheduleEvaluationContext) -> list[RunRequest]:
        tick = context.scheduled_execution_time.date().isoformat()
        return [
            RunRequest(run_key=f"{tick}:{ws.id}", partition_key=ws.id, tags={KIND_TAG: "metadata"})
            for ws in settings.workspaces
        ]

    return [moestats_nightly, moestats_campaigns_nightly]
