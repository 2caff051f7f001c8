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
from .metadata import asset_key

DEADLINE_DELAY_HOURS = 6  # after the nightly run starts, room for retries and a slow API
CHECK_NAME = "yesterday_loaded_for_every_workspace"


def deadline_hour(settings: Settings) -> int:
    return (settings.schedule_hour + DEADLINE_DELAY_HOURS) % 24


def deadline_cron(settings: Settings) -> str:
    return f"0 {deadline_hour(settings)} * * *"


def build_freshness_sensor(check) -> AutomationConditionSensorDefinition:
    """Evaluates the freshness check's condition: at the deadline, the check runs."""
    return AutomationConditionSensorDefinition(
        "moestats_freshness_deadline",
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


def build_freshness_check(settings: Settings):
    workspaces = [ws.id for ws in settings.workspaces]
    zone = ZoneInfo(settings.timezone)

    # Its own automation condition makes the check run at the deadline only: Dagster does not
    # run a check that has one along with its asset's materializations (stats runs, backfills),
    # where it would warn about a yesterday that is still being loaded.
    @asset_check(
        asset=asset_key(CAMPAIGN_STATS_RAW),
        name=CHECK_NAME,
        automation_condition=AutomationCondition.cron_tick_passed(
            deadline_cron(settings), settings.timezone
        ),
        description=(
            "Freshness (WARN): yesterday's partition (in the configured timezone) is "
            "materialized for every workspace. Runs at the daily deadline "
            f"({deadline_hour(settings):02d}:00 {settings.timezone}); lists the late workspaces."
        ),
    )
    def yesterday_loaded_for_every_workspace(context: AssetCheckExecutionContext):
        yesterday = dt.datetime.now(zone).date() - dt.timedelta(days=1)
        done = context.instance.get_materialized_partitions(asset_key(CAMPAIGN_STATS_RAW))
        late = [ws for ws in workspaces if f"{yesterday.isoformat()}|{ws}" not in done]
        return AssetCheckResult(
            passed=not late,
            severity=AssetCheckSeverity.WARN,
            metadata={
                "day": yesterday.isoformat(),
                "late_workspaces": late,
                "workspaces": len(workspaces),
            },  # fmt: skip
        )

    return yesterday_loaded_for_every_workspace
