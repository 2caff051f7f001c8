"""The nightly schedule: each workspace's yesterday (+ restatement window) after *its* day ended,
and every day of the catch-up window that is missing or whose last run failed.

Campaign metadata, the summary and the report follow by themselves (assets/automation.py); the
coverage checks run at their deadline (assets/coverage.py).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping
from zoneinfo import ZoneInfo

from dagster import (
    AssetKey,
    AssetPartitionStatus,
    DagsterInstance,
    DefaultScheduleStatus,
    MultiPartitionsDefinition,
    RunRequest,
    RunsFilter,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from moestats_dagster.config import Settings
from moestats_dagster.model.schemas import CAMPAIGN_STATS_RAW
from moestats_dagster.orchestration.defs.stats import days_per_run
from moestats_dagster.orchestration.lib.metadata import DEFAULT_NAMING, Naming
from moestats_dagster.orchestration.lib.partitions import partition_key

KIND_TAG = "moestats/kind"  # daily | restatement | catch-up: what a run is, in the run list
DAY_TAG = "moestats/days_late"  # 1 for yesterday, 2.. for restated and caught-up days
NIGHT_TAG = "moestats/night"  # the local date of the nightly tick that asked for the run
TICK_MINUTES = 15  # fine enough for zones 30 or 45 minutes off the hour (Kolkata, Kathmandu)
# A day the catch-up window re-requests on at most this many nights: a day that keeps failing
# (revoked key, a day MoEngage cannot serve) is not retried forever; the coverage check then
# names it with the backfill that fills it.
CATCH_UP_NIGHTS = 3


def nightly_requests(
    settings: Settings,
    today: dt.date,
    workspace_ids: list[str] | None = None,
    heal: Mapping[str, list[dt.date]] | None = None,
) -> list[RunRequest]:
    """Per workspace: one run of yesterday and the `restatement_days` before it, then the
    catch-up days in `heal` as runs of contiguous days, oldest first, up to a backfill run's
    days each (`days_per_run`, 45): the path backfills take, each day still published, checked
    and failed on its own. After an outage, 90 days of 10 workspaces are 30 runs, not 940.

    Conversions keep arriving after the day (attribution windows), so recent days are re-fetched
    and their slices replaced, never appended. `today` is the workspaces' local date.
    """
    chosen = workspace_ids if workspace_ids is not None else [ws.id for ws in settings.workspaces]
    recent = [today - dt.timedelta(days=n) for n in range(settings.restatement_days + 1, 0, -1)]
    recent = [d for d in recent if d >= settings.start_date]
    heal = heal or {}
    requests = []
    for ws_id in chosen:
        if recent:
            requests.append(range_request(today, recent, ws_id, "daily"))
        for days in contiguous(sorted(heal.get(ws_id, ())), days_per_run()):
            requests.append(range_request(today, days, ws_id, "catch-up"))
    return requests


def contiguous(days: list[dt.date], most: int) -> list[list[dt.date]]:
    """Sorted days as runs of consecutive days, `most` at the most each."""
    runs: list[list[dt.date]] = []
    for day in days:
        if runs and day - runs[-1][-1] == dt.timedelta(days=1) and len(runs[-1]) < most:
            runs[-1].append(day)
        else:
            runs.append([day])
    return runs


def range_request(
    today: dt.date, days: list[dt.date], ws_id: str, kind: str, job_name: str | None = None
) -> RunRequest:
    """One run of `days` (consecutive) of a workspace: a partition, or a range tagged as a
    backfill's run is (the stats step loads every day of it: assets/stats.py)."""
    first, last = str(partition_key(days[0], ws_id)), str(partition_key(days[-1], ws_id))
    tags = {KIND_TAG: kind, DAY_TAG: str((today - days[-1]).days), NIGHT_TAG: today.isoformat()}
    if len(days) > 1:
        tags |= {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}
    return RunRequest(
        run_key=f"{today.isoformat()}:{first}" + (f"..{last}" if len(days) > 1 else ""),
        partition_key=first if len(days) == 1 else None,  # a range is its tags alone
        tags=tags,
        job_name=job_name,
    )


def catch_up_window(settings: Settings, today: dt.date) -> list[dt.date]:
    """The days before the restatement window that a night may re-request, oldest first."""
    newest = today - dt.timedelta(days=settings.restatement_days + 2)
    days = [newest - dt.timedelta(days=n) for n in range(settings.catch_up_days)]
    return sorted(d for d in days if d >= settings.start_date)


def days_to_heal(
    settings: Settings,
    today: dt.date,
    workspace_ids: list[str],
    instance: DagsterInstance,
    raw_key: AssetKey,
    partitions_def: MultiPartitionsDefinition,
) -> dict[str, list[dt.date]]:
    """Per workspace, the catch-up window's days that are missing or whose last run failed, and
    that fewer than CATCH_UP_NIGHTS nights have already re-requested. A day being loaded right
    now (queued or running) is left alone."""
    window = catch_up_window(settings, today)
    if not window or not workspace_ids:
        return {}
    keys = {str(partition_key(d, ws)): (ws, d) for ws in workspace_ids for d in window}
    status = instance.get_status_by_partition(raw_key, list(keys), partitions_def) or {}
    # Nights that already asked for each day, from the runs' own tags (one query per tick).
    earliest = dt.datetime.combine(window[0], dt.time(), dt.UTC) - dt.timedelta(days=2)
    nights: dict[str, set[str]] = defaultdict(set)
    for record in instance.get_run_records(
        RunsFilter(tags={KIND_TAG: "catch-up"}, created_after=earliest)
    ):
        tags = record.dagster_run.tags
        for key in _keys_of(tags):  # a run of one day, or of a range of days
            nights[key].add(tags.get(NIGHT_TAG, ""))
    heal: dict[str, list[dt.date]] = defaultdict(list)
    for key, (ws, day) in keys.items():
        state = status.get(key)
        wanted = state is None or state == AssetPartitionStatus.FAILED
        if wanted and len(nights[key] - {today.isoformat()}) < CATCH_UP_NIGHTS:
            heal[ws].append(day)
    return dict(heal)


def _keys_of(tags: Mapping[str, str]) -> list[str]:
    """The day x workspace keys a run holds, from its tags."""
    start, end = tags.get(ASSET_PARTITION_RANGE_START_TAG), tags.get(ASSET_PARTITION_RANGE_END_TAG)
    if not start or not end or "|" not in start:
        return [tags.get("dagster/partition", "")]
    (first, ws), last = start.split("|", 1), end.split("|", 1)[0]
    day, stop = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return [
        str(partition_key(day + dt.timedelta(days=n), ws)) for n in range((stop - day).days + 1)
    ]


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


def build_schedules(
    settings: Settings,
    daily_job,
    partitions_def: MultiPartitionsDefinition,
    naming: Naming = DEFAULT_NAMING,
):
    """The schedules, on the given job (an asset job, resolved by Definitions)."""
    raw_key = naming.key(CAMPAIGN_STATS_RAW)
    zones = sorted({settings.zone(ws.id) for ws in settings.workspaces})

    @schedule(
        name=naming.name("nightly"),
        cron_schedule=f"*/{TICK_MINUTES} * * * *",
        execution_timezone="UTC",
        job=daily_job,
        default_status=DefaultScheduleStatus.STOPPED,
        description=(
            f"At {settings.schedule_hour:02d}:00 in each workspace's own time zone "
            f"({', '.join(zones)}): one run of its yesterday and the {settings.restatement_days} "
            "days before it again so late conversions land (restatement), plus every day of the "
            f"{settings.catch_up_days} before those that is missing or whose last run failed "
            "(catch-up: runs of consecutive days, up to 45 each, at most "
            f"{CATCH_UP_NIGHTS} nights per day). Ticks every "
            f"{TICK_MINUTES} min; a tick with no workspace due requests nothing."
        ),
    )
    def nightly(context: ScheduleEvaluationContext):
        tick = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
        requests = []
        for today, ids in due_workspaces(settings, tick).items():
            heal = (
                days_to_heal(settings, today, ids, context.instance, raw_key, partitions_def)
                if settings.catch_up_days
                else {}
            )
            for ws_id, days in heal.items():
                context.log.info(
                    f"{ws_id}: catching up {len(days)} day(s) missing or failed: "
                    f"{', '.join(d.isoformat() for d in days)}"
                )
            requests.extend(nightly_requests(settings, today, ids, heal))
        if not requests:
            return SkipReason(
                f"no workspace reached {settings.schedule_hour:02d}:00 local time since the "
                "last tick"
            )
        return requests

    return [nightly]
