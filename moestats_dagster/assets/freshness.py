"""Freshness: when yesterday's data must be in, asset-wide and per workspace."""

import datetime as dt
from zoneinfo import ZoneInfo

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    FreshnessPolicy,
    asset_check,
)

from ..config import Settings
from ..schemas import CAMPAIGN_STATS_RAW
from .metadata import DEFAULT_NAMING, Naming

DEADLINE_DELAY_HOURS = 6  # after the nightly run starts, room for retries and a slow API
CHECK_NAME = "yesterday_loaded_for_every_workspace"


def deadline_hour(settings: Settings) -> int:
    return (settings.schedule_hour + DEADLINE_DELAY_HOURS) % 24


def deadline_cron(settings: Settings) -> str:
    return f"0 {deadline_hour(settings)} * * *"


def build_freshness_sensor(
    check, naming: Naming = DEFAULT_NAMING
) -> AutomationConditionSensorDefinition:
    """Evaluates the freshness check's condition: at the deadline, the check runs."""
    return AutomationConditionSensorDefinition(
        naming.name("freshness_deadline"),
        target=AssetSelection.checks(check),
        default_status=DefaultSensorStatus.STOPPED,
        description="At the daily deadline: is yesterday loaded for every workspace?",
    )


def freshness_policy(settings: Settings) -> FreshnessPolicy:
    """Stale when nothing was materialized in the 24 h before the daily deadline.

    Dagster evaluates freshness per asset, not per partition; the check below names the
    workspaces whose yesterday is missing.
    """
    return FreshnessPolicy.cron(
        deadline_cron=deadline_cron(settings),
        lower_bound_delta=dt.timedelta(hours=24),
        timezone=settings.timezone,
    )


def due_day(settings: Settings, workspace_id: str, now: dt.datetime) -> dt.date:
    """The latest day of a workspace whose deadline has passed: its local yesterday from
    `schedule_hour` + 6 h local time on, the day before until then."""
    local = now.astimezone(ZoneInfo(settings.zone(workspace_id)))
    shifted = local - dt.timedelta(hours=settings.schedule_hour + DEADLINE_DELAY_HOURS)
    return shifted.date() - dt.timedelta(days=1)


def build_freshness_check(settings: Settings, naming: Naming = DEFAULT_NAMING):
    raw_key = naming.key(CAMPAIGN_STATS_RAW)
    workspaces = [ws.id for ws in settings.workspaces]

    # Its own automation condition makes the check run at the deadline only: Dagster does not
    # run a check that has one along with its asset's materializations (stats runs, backfills),
    # where it would warn about a yesterday that is still being loaded.
    @asset_check(
        asset=raw_key,
        name=CHECK_NAME,
        automation_condition=AutomationCondition.cron_tick_passed(
            deadline_cron(settings), settings.timezone
        ),
        description=(
            "Freshness (WARN): every workspace's yesterday (in its own time zone) is "
            "materialized once its deadline passed (schedule_hour + 6 h local). Runs at "
            f"{deadline_hour(settings):02d}:00 {settings.timezone}; lists the late workspaces "
            "and their days."
        ),
    )
    def yesterday_loaded_for_every_workspace(context: AssetCheckExecutionContext):
        now = dt.datetime.now(dt.UTC)
        due = {ws: due_day(settings, ws, now) for ws in workspaces}
        done = context.instance.get_materialized_partitions(raw_key)
        late = {ws: day.isoformat() for ws, day in due.items() if f"{day}|{ws}" not in done}
        return AssetCheckResult(
            passed=not late,
            severity=AssetCheckSeverity.WARN,
            metadata={
                "due_days": {ws: day.isoformat() for ws, day in due.items()},
                "late_workspaces": list(late),
                "late": late,
                "workspaces": len(workspaces),
            },
        )

    return yesterday_loaded_for_every_workspace
